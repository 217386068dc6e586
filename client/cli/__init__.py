"""`ae`: the command line over `client.Client` (`main(argv)` returns the exit status, for tests).

Exit status: 0 when every file succeeded, 1 when any failed (each listed with the server's message),
2 for a usage error or an option the served model does not support (refused before anything is sent).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from client.cli import images, series
from client.errors import ClientError, ServiceError, UnsupportedOptionError
from client.settings import DEFAULT_URL
from client.sync import Client

Command = Callable[[Client, argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `ae` command; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        with Client(args.url, api_key=args.api_key, timeout_s=args.timeout) as client:
            command: Command = args.run
            return command(client, args)
    except UnsupportedOptionError as error:
        print(f"ae {args.command}: {error}", file=sys.stderr)
        return 2
    except ServiceError as error:
        print(f"ae {args.command}: {error.status} {error.code}: {error.message}", file=sys.stderr)
        return 1
    except ClientError as error:
        print(f"ae {args.command}: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `ae anomaly ... | head`: the reader left; stop quietly rather than with a traceback.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the closed stdout until exit
        return 1


def list_models(client: Client, args: argparse.Namespace) -> int:
    """`ae models`: one line per model (default version), or the server's JSON with --json."""
    models = client.models()
    if args.json:
        print(json.dumps([{"name": m.name, "versions": [v.raw for v in m.versions]} for m in models], indent=2))
        return 0
    print(f"{'model':<24} {'version':>7}  {'task':<12} {'input':<9} operations")
    for model in models:
        info = model.default
        versions = ",".join(str(v.version) for v in model.versions)
        print(f"{model.name:<24} {versions:>7}  {info.task:<12} {info.input_kind:<9} {' '.join(info.operations)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `ae` argument parser: shared connection options, one subcommand per operation."""
    parser = argparse.ArgumentParser(prog="ae", description="Client of an ae-serve autoencoder service.")
    parser.add_argument("--url", default=os.environ.get("AE_URL", DEFAULT_URL), help="server URL (AE_URL)")
    parser.add_argument("--api-key", default=os.environ.get("AE_API_KEY"), help="API key (AE_API_KEY)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request attempt (default 60)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the served models")
    models.add_argument("--json", action="store_true", help="every field the server reports")
    models.set_defaults(run=list_models)

    compress = _files_command(commands, "compress", images.compress, "images -> .aeic streams", model=True)
    _add_rate_options(compress)
    _files_command(commands, "decompress", images.decompress, "streams -> PNG (the header names the model)")
    _files_command(commands, "denoise", images.denoise, "noisy images -> denoised PNG", model=True)
    _files_command(commands, "reconstruct", images.reconstruct, "images -> reconstructed PNG", model=True)

    embed = _files_command(commands, "embed", series.embed, "series files -> embeddings .npy", model=True)
    embed.add_argument("--batch-size", type=int, default=256, help="series per request (the server's limit)")
    anomaly = _files_command(commands, "anomaly", series.anomaly, "per-series anomaly scores (CSV)", model=True)
    anomaly.add_argument("--batch-size", type=int, default=256, help="series per request (the server's limit)")
    anomaly.add_argument("--threshold", type=float, help="flag errors above this instead of the model's threshold")
    return parser


def _add_rate_options(compress: argparse.ArgumentParser) -> None:
    """`ae compress`'s rate: at most one of a quality and two size targets (see `choices.codec_for`)."""
    rate = compress.add_mutually_exclusive_group()
    rate.add_argument(
        "--quality",
        type=float,
        metavar="Q",
        help="quality in [0, 1] of the codec named by -m (-m image-codec --quality 0.6); where -m BASE is not "
        "served but its ladder BASE-q1.. is, the rung (-m BASE --quality 3 = BASE-q3)",
    )
    rate.add_argument(
        "--target-bpp", type=float, metavar="BPP", help="at most this many bits per pixel (a variable-rate codec)"
    )
    rate.add_argument(
        "--max-bytes", type=int, metavar="N", help="streams of at most this many bytes (a variable-rate codec)"
    )


def _files_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    run: Command,
    help: str,
    model: bool = False,
) -> argparse.ArgumentParser:
    """A subcommand over files, folders and globs, with output, concurrency and quiet options."""
    parser = commands.add_parser(name, help=help, description=help)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders (recursively) or globs")
    optional_output = name == "anomaly"
    parser.add_argument(
        "-o",
        "--output",
        required=not optional_output,
        help="output folder (embed: OUT.npy for one input; anomaly: CSV)",
    )
    if model:
        parser.add_argument("-m", "--model", required=True, help="model name")
        parser.add_argument("--model-version", type=int, help="an explicit version (default: the model's default)")
    else:
        parser.set_defaults(model_version=None)
    parser.add_argument("-j", "--jobs", type=int, default=4, help="requests in flight at once (default 4)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser
