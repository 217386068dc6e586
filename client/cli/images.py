"""`ae compress`, `ae decompress`, `ae denoise` and `ae reconstruct`: one request per image file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from client.cli import choices
from client.cli.inputs import expand, output_paths
from client.cli.report import Outcome, run_jobs, summarize
from client.sync import Client

# One file's work: read the input, ask the server, write the output.
PairJob = Callable[[Path, Path], Outcome]


def compress(client: Client, args: argparse.Namespace) -> int:
    """Images -> `.aeic` streams in `-o DIR`, with their rate (and quality, from a variable-rate codec)."""
    models = client.models()
    choice = choices.codec_for(models, args.model, args.quality, args.target_bpp, args.max_bytes)
    info = choices.pick_version(models, choice.model, args.model_version)
    choices.require(info, choice.model, "encode", "image", task="compress")

    def job(source: Path, target: Path) -> Outcome:
        data = source.read_bytes()
        packed = client.compress(
            data,
            choice.model,
            args.model_version,
            quality=choice.quality,
            target_bpp=choice.target_bpp,
            max_bytes=choice.max_bytes,
        )
        target.write_bytes(packed.stream)
        return Outcome(
            source, len(data), len(packed.stream), bits_per_pixel=packed.bits_per_pixel, quality=packed.quality
        )

    return _each_file(args, ".aeic", job)


def decompress(client: Client, args: argparse.Namespace) -> int:
    """Streams -> PNGs in `-o DIR`, each decoded by the model version its header names."""

    def job(source: Path, target: Path) -> Outcome:
        stream = source.read_bytes()
        client.decompress(stream).save(target, format="PNG")
        return Outcome(source, len(stream), target.stat().st_size)

    return _each_file(args, ".png", job)


def reconstruct(client: Client, args: argparse.Namespace) -> int:
    """Images -> the model's reconstructions as PNGs in `-o DIR` (a codec adds rate and PSNR)."""
    choices.require(
        choices.pick_version(client.models(), args.model, args.model_version), args.model, "reconstruct", "image"
    )
    return _each_file(args, ".png", _reconstruct_job(client, args))


def denoise(client: Client, args: argparse.Namespace) -> int:
    """Noisy images -> a denoiser's clean PNGs in `-o DIR`."""
    info = choices.pick_version(client.models(), args.model, args.model_version)
    choices.require(info, args.model, "reconstruct", "image", task="denoise")
    return _each_file(args, ".png", _reconstruct_job(client, args))


def _reconstruct_job(client: Client, args: argparse.Namespace) -> PairJob:
    def job(source: Path, target: Path) -> Outcome:
        data = source.read_bytes()
        result = client.reconstruct_image(data, args.model, args.model_version)
        target.write_bytes(result.data)
        return Outcome(source, len(data), len(result.data), bits_per_pixel=result.bits_per_pixel, psnr=result.psnr)

    return job


def _each_file(args: argparse.Namespace, suffix: str, job: PairJob) -> int:
    """Run `job(input, output)` over the inputs; report failures and the summary on stderr."""
    inputs = expand(args.inputs)
    out_dir = Path(args.output)
    targets = dict(zip(inputs, output_paths(inputs, out_dir, suffix), strict=True))
    out_dir.mkdir(parents=True, exist_ok=True)

    def per_file(path: Path) -> Outcome:
        return job(path, targets[path])

    outcomes = run_jobs(inputs, per_file, args.jobs, args.quiet)
    return summarize(args.command, outcomes, sys.stderr)
