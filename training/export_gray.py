"""`ae-train export GRAY_RUN --gray-of models/NAME/VERSION`: an RGB model version plus its gray variant.

The new version (the next free one of NAME unless given) holds VERSION's files unchanged (its graphs,
and a codec's entropy tables) and GRAY_RUN's graphs as its `gray_` graphs, with a codec's gray tables
in `gray_entropy_tables.json` and the run's training record as `gray_training`. The service then runs
single-channel images (and 1-channel streams) on the gray graphs and everything else as VERSION did,
so streams and answers of VERSION's RGB graphs are reproduced bit for bit by the new version.

A new version and not an edit of VERSION: versions are immutable (their graphs' sha256 are in the
manifest; a codec's streams name their version). Git stores the copied files once.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from service.manifest import GRAY_PREFIX, MANIFEST_FILE, ImageInputSpec, Manifest, load_manifest
from training.checkpoint import restore_model
from training.export import (
    export_graphs,
    export_tables,
    final_validation,
    input_and_latent,
    new_version_folder,
    recorded_config,
    training_record,
)
from training.export_fp16 import refuse_fp16, with_fp16_variant
from training.graphs import graph_plans
from training.models.codec import CompressionAutoencoder

GRAY_TABLES_FILE = "gray_entropy_tables.json"


def export_gray_variant(
    gray_run: Path,
    rgb_version: Path,
    models_dir: Path,
    version: int | None = None,
    self_ensemble: int = 1,
    fp16: bool = False,
) -> Path:
    """Export `gray_run` as the gray variant of the RGB model version `rgb_version`; returns the new folder.

    `fp16` adds float16 copies of every graph, RGB and gray (training.export_fp16).
    """
    model, config, state = restore_model(gray_run)
    rgb = load_manifest(rgb_version)
    if not isinstance(rgb.input, ImageInputSpec) or rgb.input.channels != 3 or rgb.has_gray_variant:
        raise ValueError(f"{rgb_version}: --gray-of takes an RGB image model version without a gray variant")
    if getattr(config.model, "channels", None) != 1 or config.model.family != rgb.family:
        raise ValueError(f"{gray_run}: a gray variant is a run of family {rgb.family!r} with channels = 1")
    _, latent = input_and_latent(model, state.get("data_info", {}), max_length=1)
    if latent != rgb.latent:
        raise ValueError(f"{gray_run}: its latent {latent.shape} is not the RGB model's {rgb.latent.shape}")
    plans = graph_plans(model, self_ensemble)
    if {plan.role for plan in plans} != set(rgb.graphs):
        raise ValueError(f"{gray_run} exports {sorted(p.role for p in plans)}, the RGB version {sorted(rgb.graphs)}")
    if fp16:
        refuse_fp16(rgb.task, image_model=True)
    with new_version_folder(models_dir, rgb.name, version) as (out, version):
        files = [g.file for g in rgb.graphs.values()] + ([rgb.entropy_model.file] if rgb.entropy_model else [])
        for file in files:
            shutil.copy2(rgb_version / file, out / file)
        gray_graphs, worst = export_graphs(model, plans, out, prefix=GRAY_PREFIX)
        gray_tables = export_tables(model, out, GRAY_TABLES_FILE) if isinstance(model, CompressionAutoencoder) else None
        recorded = recorded_config(config, self_ensemble)
        manifest = Manifest.model_validate(
            {
                **rgb.model_dump(),
                "version": version,
                "graphs": {**rgb.model_dump()["graphs"], **{k: g.model_dump() for k, g in gray_graphs.items()}},
                "gray_entropy_model": gray_tables.model_dump() if gray_tables else None,
                "gray_training": training_record(recorded, state, final_validation(gray_run)).model_dump(),
                "parity_max_abs_diff": max(rgb.parity_max_abs_diff, worst),
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )
        if fp16:
            manifest = with_fp16_variant(out, manifest)
        (out / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    return out
