"""`ae embed` and `ae anomaly`: series files, batched to the server's limit, `-j` requests at a time."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import TextIO

import numpy as np

from client.cli import choices
from client.cli.inputs import expand, output_paths, read_series
from client.cli.report import Outcome, run_jobs, summarize
from client.results import SeriesReconstruction
from client.sync import Client


def embed(client: Client, args: argparse.Namespace) -> int:
    """Series files -> embeddings (.npy): `-o OUT.npy` for one input, `-o DIR` (STEM.npy each) for several."""
    choices.require(
        choices.pick_version(client.models(), args.model, args.model_version), args.model, "encode", "sequence"
    )
    inputs = expand(args.inputs)
    single = len(inputs) == 1 and args.output.endswith(".npy")
    targets = [Path(args.output)] if single else output_paths(inputs, Path(args.output), ".npy")
    target_of = dict(zip(inputs, targets, strict=True))
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)

    def job(path: Path) -> Outcome:
        series = read_series(path)
        embeddings = client.embed_many(series, args.model, args.model_version, args.batch_size, args.jobs)
        np.save(target_of[path], embeddings)
        return Outcome(path, path.stat().st_size, target_of[path].stat().st_size, items=len(series))

    # Files one after another: the concurrency is spent on each file's batches.
    return summarize(args.command, run_jobs(inputs, job, 1, args.quiet), sys.stderr)


def anomaly(client: Client, args: argparse.Namespace) -> int:
    """Per-series scores as CSV (stdout or `-o`): error, and percentile and flag where the model has a threshold."""
    choices.require(
        choices.pick_version(client.models(), args.model, args.model_version), args.model, "reconstruct", "sequence"
    )
    inputs = expand(args.inputs)
    scores: dict[Path, SeriesReconstruction] = {}

    def job(path: Path) -> Outcome:
        series = read_series(path)
        scores[path] = client.reconstruct_series_many(
            series, args.model, args.model_version, args.threshold, args.batch_size, args.jobs
        )
        return Outcome(path, path.stat().st_size, items=len(series))

    outcomes = run_jobs(inputs, job, 1, args.quiet)
    if args.output:
        with open(args.output, "w", newline="") as handle:
            _write_scores(handle, inputs, scores)
    else:
        _write_scores(sys.stdout, inputs, scores)
    return summarize(args.command, outcomes, sys.stderr)


def _write_scores(stream: TextIO, inputs: list[Path], scores: dict[Path, SeriesReconstruction]) -> None:
    """`file,series,error,percentile,anomaly`; the last two empty where the model gave none."""
    writer = csv.writer(stream)
    writer.writerow(["file", "series", "error", "percentile", "anomaly"])
    for path in inputs:
        if (result := scores.get(path)) is None:
            continue
        for index, error in enumerate(result.errors):
            percentile = "" if result.percentiles is None else f"{result.percentiles[index]:.2f}"
            flag = "" if result.anomaly is None else str(bool(result.anomaly[index])).lower()
            writer.writerow([str(path), index, f"{error:.6g}", percentile, flag])
