"""`ae-train`: fit a model from a config, export a run to the model repository.

ae-train fit configs/ecg-embed.toml --set optim.steps=500 --run-dir runs/ecg
ae-train fit configs/ecg-embed.toml --run-dir runs/ecg --resume
ae-train fit configs/ecg-embed.toml --print-config   # every key: value, default, meaning
torchrun --nproc_per_node 2 -m training.cli fit configs/ecg-embed.toml   # docs/distributed-training.md
ae-train export runs/ecg --name ecg-embed --models-dir models
ae-train calibrate --model ecg-anomaly --data ../shared/datasets/sequences/ecg5000/ECG5000_TRAIN.txt --quantile 0.99
ae-train data fetch   # BSDS500 and ECG5000 into $AE_DATASETS (default ../shared/datasets)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training import datasets
from training.config import load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ae-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="train a model")
    fit.add_argument("config", type=Path, nargs="?", help="TOML config ([model], [data], [optim])")
    fit.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (JSON value), repeatable",
    )
    fit.add_argument("--run-dir", type=Path, default=None, help="default: runs/<config name>")
    fit.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    fit.add_argument(
        "--data-root",
        type=Path,
        default=Path.cwd(),
        help="relative data paths resolve against this (default: current directory)",
    )
    fit.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    fit.add_argument(
        "--print-config",
        action="store_true",
        help="print every config key with this run's value, its default and meaning (TOML), and exit",
    )
    fit.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help=(
            "start from a weights file (.safetensors, or a folder holding weights.safetensors), a model version "
            "folder (models/NAME/VERSION) or a run folder's best weights; "
            "RGB weights are converted when the config is gray (channels = 1). Fresh optimizer and schedule"
        ),
    )

    export = commands.add_parser("export", help="export a run to models/NAME/VERSION/")
    export.add_argument("run_dir", type=Path, nargs="?", help="the run (not with --fp16-of)")
    export.add_argument("--name", default=None, help="model name (kebab-case); required unless --gray-of")
    export.add_argument(
        "--fp16",
        action="store_true",
        help="also write float16 copies of the graphs (float32 at their inputs and outputs), parity-checked",
    )
    export.add_argument(
        "--fp16-of",
        type=Path,
        default=None,
        help="no run: export a new version of this model version (models/NAME/VERSION) holding its files "
        "and float16 copies of its graphs",
    )
    export.add_argument(
        "--gray-of",
        type=Path,
        default=None,
        help=(
            "the run is gray (channels = 1): export a new version of this RGB model version (models/NAME/VERSION) "
            "holding its files and the run's graphs as its gray variant"
        ),
    )
    export.add_argument("--models-dir", type=Path, default=Path("models"))
    export.add_argument("--version", type=int, default=None, help="default: the next free integer")
    export.add_argument("--task", choices=["compress", "denoise", "embed", "reconstruct"], default=None)
    export.add_argument("--max-length", type=int, default=4096, help="longest series the service accepts")
    export.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="model.KEY=VALUE",
        help="a model setting chosen after training that holds no weights (e.g. model.served_paa_weight=3)",
    )
    export.add_argument(
        "--self-ensemble",
        type=int,
        choices=(1, 4, 8),
        default=1,
        help="denoisers: average the graph over 4 rotations (8: and their mirror images); that many times the compute",
    )

    evaluate = commands.add_parser("evaluate", help="evaluate served models against classical baselines")
    repository = argparse.ArgumentParser(add_help=False)  # shared by every kind of evaluation
    repository.add_argument(
        "--models-dir",
        type=Path,
        default=Path("models"),
        help="model repository where model names (--model NAME) are looked up (default: models)",
    )
    kinds = evaluate.add_subparsers(dest="kind", required=True)
    model_help = "a model name under --models-dir, or the path of a model or version folder"
    embeddings = kinds.add_parser(
        "embeddings", parents=[repository], help="1-NN accuracy of embeddings; anomaly ROC AUC"
    )
    embeddings.add_argument("--data", type=Path, required=True, help="labelled series (UCR text or JSON Lines)")
    embeddings.add_argument("--model", default="ecg-embed", help=model_help)
    embeddings.add_argument("--anomaly-model", default="ecg-anomaly", help=model_help)
    embeddings.add_argument("--no-anomaly", action="store_true", help="skip the anomaly evaluation")
    embeddings.add_argument("--out", type=Path, default=None, help="default: docs/evaluation/<model>/v<N>/")
    series = kinds.add_parser(
        "series",
        parents=[repository],
        help="1-NN accuracy of a general embedder on unseen sets (UCR via aeon, its file's held-out part)",
    )
    series.add_argument("--model", default="series-embed", help=model_help)
    series.add_argument(
        "--held-out-file",
        type=Path,
        default=Path("../shared/datasets/sequences/ecg5000/ECG5000_TRAIN.txt"),
        help=(
            "the labelled series file the model mixed in; its manifest-recorded held-out part is scored "
            "(with --design-run: leave-one-out on the rest of it, never the held-out part)"
        ),
    )
    series.add_argument("--no-multivariate", action="store_true", help="skip BasicMotions (6 channels)")
    series.add_argument(
        "--design-run",
        type=Path,
        default=None,
        help="instead: leave-one-out 1-NN on the TRAIN splits only, of this run's best checkpoint (for design choices)",
    )
    series.add_argument("--out", type=Path, default=None, help="default: docs/evaluation/<model>/v<N>/")
    images = kinds.add_parser(
        "images", parents=[repository], help="PSNR of an image model's reconstructions on held-out photos"
    )
    images.add_argument("--images", type=Path, required=True, help="image folder (held out: every 10th file)")
    images.add_argument("--model", default="image-conv", help=model_help)
    images.add_argument(
        "--split",
        choices=["heldout", "all"],
        default="heldout",
        help="heldout: every 10th file (the training split's validation); all: every file",
    )
    images.add_argument("--out", type=Path, default=None, help="default: docs/evaluation/<model>/v<N>/")
    images.add_argument(
        "--tile",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="score tiles of this size, one request each (default: whole photos, or a fixed-size model's size)",
    )
    codec = kinds.add_parser(
        "codec", parents=[repository], help="RD curves, BD-rate of the codec models against JPEG and WebP"
    )
    codec.add_argument("--images", type=Path, required=True, help="image folder")
    codec.add_argument(
        "--split",
        choices=["heldout", "all"],
        default="heldout",
        help="heldout: every 10th file (the training split's validation); all: every file",
    )
    codec.add_argument(
        "--models", nargs="+", default=[f"image-codec-q{q}" for q in (1, 2, 3, 4, 5)], help=model_help + " (each)"
    )
    codec.add_argument(
        "--baseline", nargs="*", default=[], help=model_help + " (each): a curve ours is compared with (BD-rate)"
    )
    codec.add_argument("--gray", action="store_true", help="the photos in gray: gray streams, JPEG's gray mode")
    codec.add_argument(
        "--out", type=Path, default=None, help="default: docs/evaluation/<ladder>/v<N>/ (.../gray/ with --gray)"
    )
    denoise = kinds.add_parser(
        "denoise", parents=[repository], help="PSNR/SSIM of the denoiser against BM3D and non-local means"
    )
    denoise.add_argument("--images", type=Path, required=True, help="image folder")
    denoise.add_argument("--sigma", type=float, nargs="+", default=[15.0, 25.0, 50.0], help="noise levels (0..255)")
    denoise.add_argument("--split", choices=["heldout", "all"], default="heldout")
    denoise.add_argument("--bm3d-limit", type=int, default=10, help="images BM3D runs on (it is slow)")
    denoise.add_argument("--model", default="image-denoise", help=model_help)
    denoise.add_argument(
        "--gray", action="store_true", help="the photos in gray with gray noise, against BM3D's gray variant"
    )
    denoise.add_argument(
        "--out", type=Path, default=None, help="default: docs/evaluation/<model>/v<N>/ (.../gray/ with --gray)"
    )
    calibrate = commands.add_parser(
        "calibrate",
        parents=[repository],
        help="store an anomaly threshold in a reconstruct model's model.json; ROC AUC, precision, recall",
    )
    calibrate.add_argument("--model", default="ecg-anomaly", help=model_help + " (a model: its latest version)")
    calibrate.add_argument(
        "--data", type=Path, required=True, help="labelled series (class 1 normal), UCR or JSON Lines"
    )
    calibrate.add_argument("--quantile", type=float, default=0.99, help="threshold: this quantile of normal errors")
    calibrate.add_argument(
        "--seed", type=int, default=0, help="seeds the calibration/evaluation cut of held-out normals"
    )
    calibrate.add_argument("--out", type=Path, default=None, help="default: docs/evaluation/<model>/v<N>/")
    data = commands.add_parser("data", help="the public data sets the default models were trained on")
    actions = data.add_subparsers(dest="action", required=True)
    fetch = actions.add_parser("fetch", help="download BSDS500 and ECG5000, verify their checksums, write them")
    fetch.add_argument(
        "--dest", type=Path, default=None, help="data root (default: $AE_DATASETS or ../shared/datasets)"
    )
    fetch.add_argument(
        "--mirror", default=None, help="base URL serving the archives by name (default: $AE_DATA_MIRROR)"
    )
    fetch.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    return parser


def _data(args: argparse.Namespace) -> dict[str, object]:
    root = args.dest or datasets.default_root()
    mirror = args.mirror or datasets.default_mirror()
    summary = datasets.fetch(
        root, mirror=mirror, timeout=args.timeout, report=lambda line: print(line, file=sys.stderr)
    )
    return {"root": str(root), "data_sets": summary}


def _evaluate(args: argparse.Namespace) -> dict[str, object]:
    from training.evaluate.served import model_folder

    def model(name_or_path: str) -> Path:
        return model_folder(name_or_path, args.models_dir)

    if args.kind == "denoise":
        from training.evaluate import denoise

        return denoise.run(
            args.images, model(args.model), args.sigma, args.out, args.bm3d_limit, args.split, gray=args.gray
        )
    if args.kind == "codec":
        from training.evaluate import codec

        models, baseline = [model(m) for m in args.models], [model(m) for m in args.baseline]
        return codec.run(args.images, models, args.out, args.split, gray=args.gray, baseline_dirs=baseline)
    if args.kind == "images":
        from training.evaluate import images

        tile = tuple(args.tile) if args.tile else None
        return images.run(args.images, model(args.model), args.out, tile=tile, split=args.split)
    if args.kind == "series":
        from training.evaluate import series

        if args.design_run is not None:
            return series.design_scores(args.design_run, args.held_out_file)
        return series.run(model(args.model), args.held_out_file, not args.no_multivariate, args.out)
    from training.evaluate import embeddings

    anomaly = None if args.no_anomaly else model(args.anomaly_model)
    return embeddings.run(args.data, model(args.model), anomaly, args.out)


def _export(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """`ae-train export`: a run as a new model version, or as an RGB version's gray variant, or fp16 copies.

    --gray-of: the run is the gray variant of that version; --fp16-of: no run, that version plus
    float16 copies of its graphs.
    """
    if args.fp16_of is not None:
        from training.export_fp16 import export_fp16_of

        if args.run_dir is not None or args.gray_of is not None or args.name is not None or args.overrides:
            parser.error("--fp16-of takes no run, --name, --gray-of or --set: it copies a model version")
        return export_fp16_of(args.fp16_of, args.models_dir, args.version)
    if args.run_dir is None:
        parser.error("export needs a run folder (or --fp16-of)")
    if args.gray_of is not None:
        from training.export_gray import export_gray_variant

        if args.overrides:
            parser.error("--set applies to a run's own export, not to --gray-of")

        return export_gray_variant(
            args.run_dir, args.gray_of, args.models_dir, args.version, args.self_ensemble, fp16=args.fp16
        )
    from training.export import export_run

    if args.name is None:
        parser.error("export needs --name (or --gray-of)")
    return export_run(
        args.run_dir,
        args.name,
        args.models_dir,
        args.version,
        args.task,
        args.max_length,
        self_ensemble=args.self_ensemble,
        fp16=args.fp16,
        overrides=args.overrides,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (tests call it with an argv list)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "fit":
            config = load_config(args.config, args.overrides)
            if args.print_config:
                from training.config_help import render_config

                print(render_config(config, str(args.config or "(no config file)")))
                return 0
            name = args.config.stem if args.config else config.model.family
            run_dir = args.run_dir or Path("runs") / name
            from training.distributed import ranks_from_env
            from training.fit import fit  # torch is imported only when a command needs it

            summary = fit(
                config,
                run_dir,
                root=args.data_root,
                resume=args.resume,
                progress=not args.no_progress,
                init_from=args.init_from,
            )
            if ranks_from_env().is_main:  # under torchrun, one answer for the run
                print(json.dumps({"run_dir": str(run_dir), **summary}, indent=2))
        elif args.command == "evaluate":
            print(json.dumps(_evaluate(args), indent=2))
        elif args.command == "calibrate":
            from training import calibrate as calibration
            from training.evaluate.served import model_folder

            folder = model_folder(args.model, args.models_dir)
            print(json.dumps(calibration.run(folder, args.data, args.quantile, args.seed, args.out), indent=2))
        elif args.command == "data":
            print(json.dumps(_data(args), indent=2))
        else:
            out = _export(parser, args)
            manifest = json.loads((out / "model.json").read_text())
            print(
                json.dumps(
                    {
                        "exported": str(out),
                        "graphs": sorted(manifest["graphs"]),
                        "parity_max_abs_diff": manifest["parity_max_abs_diff"],
                    },
                    indent=2,
                )
            )
    except (ValueError, FileNotFoundError, FileExistsError, datasets.DataFetchError) as error:
        print(f"ae-train: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
