"""The training loop: seeded, resumable, validated every N steps, with metrics and plots.

A run folder holds `config.json`, `metrics.jsonl` (one JSON object per log point),
`checkpoint.pt` (latest), `best.pt` (best validation loss), `summary.json`, `loss_curves.png`
and `samples.png`.

Under torchrun every rank trains through DistributedDataParallel on its slice of each global batch
(see `training.distributed`); rank 0 alone writes the run folder, validates and shows progress.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from training.checkpoint import BEST, LATEST, load_checkpoint, save_checkpoint
from training.config import OptimConfig, RunConfig
from training.data import build_datasets, collate, print_to_stderr
from training.distributed import (
    GlobalBatchShard,
    Ranks,
    data_parallel,
    main_rank_value,
    mean_over_ranks,
    process_group,
    rank_device,
    ranks_from_env,
)
from training.init_weights import apply_initial_weights, load_initial_weights
from training.losses import loss_for
from training.plots import plot_image_samples, plot_loss_curves, plot_sequence_samples
from training.progress import Progress, RunBar
from training.registry import build_model


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(choice: str) -> torch.device:
    """`auto` takes CUDA when present."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def run_model(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Call either family with what it takes (sequences also need their lengths)."""
    if "lengths" in batch:
        return model(batch["input"], batch["lengths"])
    return model(batch["input"])


def _forever(loader: DataLoader[dict[str, Tensor]]) -> Iterator[dict[str, Tensor]]:
    while True:
        yield from loader


def _to(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Dataset[dict[str, Tensor]], loss_fn: Any, device: torch.device, batch_size: int
) -> dict[str, float]:
    """Mean of each loss part over the validation set, weighted by batch size."""
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
        batch = _to(batch, device)
        parts = loss_fn(run_model(model, batch), batch)
        n = len(batch["input"])
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + float(value) * n
        count += n
    model.train()
    return {key: value / count for key, value in totals.items()}


def _lr_lambda(config: RunConfig, progress: Progress) -> Any:
    floor, warmup = config.optim.min_lr_ratio, config.optim.warmup_steps

    def schedule(step: int) -> float:
        cosine = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress(step)))
        return cosine * min(1.0, (step + 1) / warmup) if warmup > 0 else cosine

    return schedule


def _log(run_dir: Path, record: dict[str, Any]) -> None:
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def _save_samples(model: nn.Module, dataset: Dataset[dict[str, Tensor]], device: torch.device, out: Path) -> None:
    items = [dataset[i] for i in range(min(6, len(dataset)))]  # type: ignore[arg-type]
    batch = _to(collate(items), device)
    model.eval()
    with torch.no_grad():
        x_hat = run_model(model, batch)["x_hat"].float().cpu().numpy()
    model.train()
    if "lengths" in batch:
        lengths = batch["lengths"].tolist()[: len(items)]  # pairs of views: the first views
        series = [item["input"].numpy() for item in items]
        plot_sequence_samples(series, [x_hat[i, :n] for i, n in enumerate(lengths)], out)
    else:
        plot_image_samples(batch["input"].cpu().numpy(), batch["target"].cpu().numpy(), x_hat, out)


def _train_loader(
    train_set: Dataset[dict[str, Tensor]], opt: OptimConfig, ranks: Ranks
) -> DataLoader[dict[str, Tensor]]:
    """Training batches; across ranks, this rank's slice of each global batch the ranks agree on."""
    if ranks.distributed:
        size = len(train_set)  # type: ignore[arg-type]
        shard = GlobalBatchShard(size, opt.batch_size, ranks, opt.shuffle, opt.seed)
        return DataLoader(train_set, batch_sampler=shard, collate_fn=collate, num_workers=opt.num_workers)
    size = len(train_set)  # type: ignore[arg-type]
    if size < opt.batch_size:
        # Whole batches only (drop_last): a loader of none would leave the run waiting forever.
        raise ValueError(
            f"{size} training items do not fill one batch of {opt.batch_size}: "
            f"set optim.batch_size to at most {size} (--set optim.batch_size={size}), or add data"
        )
    return DataLoader(
        train_set,
        batch_size=opt.batch_size,
        shuffle=opt.shuffle,
        drop_last=True,
        collate_fn=collate,
        num_workers=opt.num_workers,
        generator=torch.Generator().manual_seed(opt.seed),
    )


def _silent(line: str) -> None:
    """The `report` of ranks other than 0: one copy of each line is enough."""


def fit(
    config: RunConfig,
    run_dir: Path,
    root: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    init_from: Path | None = None,
    report: Callable[[str], None] = print_to_stderr,
) -> dict[str, Any]:
    """Train per `config` into `run_dir`; returns the summary (also written to summary.json).

    `report` gets the one-line summary of the data read, before training starts. Under torchrun
    (RANK and WORLD_SIZE set) this runs on every rank; ranks other than 0 return only their rank
    and step count.
    """
    ranks = ranks_from_env()
    device = rank_device(pick_device(config.optim.device), ranks)
    with process_group(ranks, device):
        if not ranks.is_main:
            progress, report = False, _silent
        return _fit(config, run_dir, ranks, device, root, resume, progress, init_from, report)


def _fit(
    config: RunConfig,
    run_dir: Path,
    ranks: Ranks,
    device: torch.device,
    root: Path | None,
    resume: bool,
    progress: bool,
    init_from: Path | None,
    report: Callable[[str], None],
) -> dict[str, Any]:
    if ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    opt = config.optim
    seed_everything(opt.seed)
    train_set, val_set, data_info = build_datasets(config.data, root or Path.cwd(), opt.seed, report)
    model = build_model(config.model).to(device)
    loss_fn = loss_for(config.model)
    optimizer = torch.optim.AdamW(_parameter_groups(model, opt), lr=opt.lr, weight_decay=opt.weight_decay)
    run_progress = Progress(opt.steps, opt.time_budget_s)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, run_progress))
    state = {"step": 0, "wall_time_s": 0.0, "best_val": float("inf")}
    if resume and (run_dir / LATEST).is_file():
        saved = load_checkpoint(run_dir / LATEST)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = {k: saved[k] for k in state}
    elif init_from is not None:
        # Fine-tuning: start from another run's or a model version's weights, fresh optimizer and schedule.
        weights = load_initial_weights(init_from, model, config.model.family, getattr(config.model, "channels", 3))
        apply_initial_weights(model, weights)
        report(f"starting from {weights.source}" + (f"; fresh: {', '.join(weights.fresh)}" if weights.fresh else ""))
        # A family may start some fresh parts from what the source holds beyond weights (the hyperprior
        # codec: its hyper-synthesis from a ladder version's entropy tables).
        if hasattr(model, "warm_start") and (done := model.warm_start(init_from, weights.fresh)):
            report(done)
    if ranks.is_main:
        if not resume and (run_dir / "metrics.jsonl").exists():
            (run_dir / "metrics.jsonl").unlink()  # a fresh run must not append to an old curve
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    use_amp = device.type == "cuda" and opt.mixed_precision  # bf16 pays off only on GPUs
    loader = _train_loader(train_set, opt, ranks)
    trainer = data_parallel(model, ranks, device)  # after loading weights: DDP starts from rank 0's

    def checkpoint(path: Path) -> None:
        save_checkpoint(
            path,
            {
                "config": config.to_dict(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "data_info": data_info,
                "device": str(device),
                "torch_version": torch.__version__,
                **state,
            },
        )

    batches = _forever(loader)
    bar = RunBar(run_progress, int(state["step"]), enabled=progress)
    started = time.perf_counter() - float(state["wall_time_s"])
    window: list[Tensor] = []
    model.train()
    val: dict[str, float] = {}
    # The untrained baseline, so every curve shows what training bought.
    if ranks.is_main and state["step"] == 0:
        val = evaluate(model, val_set, loss_fn, device, opt.batch_size)
        _log(run_dir, {"step": 0, "split": "val", **val})
    # A resumed run's budget counts from this start: the budget is per invocation of fit.
    budget_start = time.perf_counter()
    while not run_progress.done(int(state["step"])):
        batch = _to(next(batches), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            parts = loss_fn(run_model(trainer, batch), batch)
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
        optimizer.step()
        elapsed_s = time.perf_counter() - budget_start
        if ranks.distributed and opt.time_budget_s is not None:
            # Rank 0's clock decides for all: every rank must stop at the same step (a rank left
            # alone in the gradient all-reduce would wait forever) and follow the same schedule.
            elapsed_s = main_rank_value(elapsed_s, device)
        run_progress.elapsed_s = elapsed_s
        scheduler.step()
        state["step"] += 1
        # Kept on the device: reading a GPU loss every step would stall the queue of kernels.
        window.append(parts["loss"].detach())
        step = int(state["step"])
        if progress and step % 25 == 0:
            bar.update(step, loss=f"{float(window[-1]):.4g}", val=f"{val.get('loss', float('nan')):.4g}")
        elif progress:
            bar.update(step)
        last = run_progress.done(step)
        if step % opt.val_every == 0 or last:
            state["wall_time_s"] = time.perf_counter() - started
            train_loss = float(mean_over_ranks(torch.stack(window).float().mean(), ranks))  # every rank
            window = []
            # Validation is rank 0's alone, on the plain model: the other ranks go on and wait for
            # it in the next step's gradient all-reduce.
            if ranks.is_main:
                _log(
                    run_dir,
                    {
                        "step": step,
                        "split": "train",
                        "loss": train_loss,
                        "lr": scheduler.get_last_lr()[0],
                        "wall_time_s": state["wall_time_s"],
                    },
                )
                val = evaluate(model, val_set, loss_fn, device, opt.batch_size)
                _log(run_dir, {"step": step, "split": "val", **val})
                if val["loss"] < state["best_val"]:
                    state["best_val"] = val["loss"]
                    checkpoint(run_dir / BEST)
        if ranks.is_main and (step % opt.checkpoint_every == 0 or last):
            state["wall_time_s"] = time.perf_counter() - started
            checkpoint(run_dir / LATEST)
    bar.close()
    if not ranks.is_main:
        return {"rank": ranks.rank, "steps": int(state["step"])}
    return _finish(run_dir, model, val_set, loss_fn, device, config, state, data_info)


def _parameter_groups(model: nn.Module, opt: OptimConfig) -> list[dict[str, Any]]:
    """The trained parameters as optimizer groups: one at `optim.lr`, and others where the model scales it.

    A model may define `learning_rate_scales()` (parameter-name prefix -> factor): the hyperprior codec
    trains its gains, which Adam moves about lr per step, and its fresh hyper transforms faster than the
    transforms it warm-starts from.
    """
    trained = {id(p) for p in _trained_parameters(model, opt)}
    scales: dict[str, float] = getattr(model, "learning_rate_scales", dict)()
    groups: dict[float, list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if id(parameter) in trained:
            scale = next((factor for prefix, factor in scales.items() if name.startswith(prefix)), 1.0)
            groups.setdefault(scale, []).append(parameter)
    return [{"params": params, "lr": opt.lr * scale} for scale, params in groups.items()]


def _trained_parameters(model: nn.Module, opt: OptimConfig) -> list[nn.Parameter]:
    """The parameters `optim.train_only` names (all when empty); the others are frozen (no gradient)."""
    if not opt.train_only:
        return list(model.parameters())
    prefixes = tuple(opt.train_only)
    trained = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(prefixes))
        if parameter.requires_grad:
            trained.append(parameter)
    if not trained:
        raise ValueError(f"optim.train_only {opt.train_only} names no parameter of this model")
    return trained


def _finish(
    run_dir: Path,
    model: nn.Module,
    val_set: Dataset[dict[str, Tensor]],
    loss_fn: Any,
    device: torch.device,
    config: RunConfig,
    state: dict[str, Any],
    data_info: dict[str, Any],
) -> dict[str, Any]:
    """Plots and summary.json; the summary reports the best checkpoint, which export uses."""
    if (run_dir / "metrics.jsonl").exists():
        plot_loss_curves(run_dir / "metrics.jsonl", run_dir / "loss_curves.png")
    best = load_checkpoint(run_dir / BEST) if (run_dir / BEST).exists() else None
    if best is not None:
        model.load_state_dict(best["model"])
    _save_samples(model, val_set, device, run_dir / "samples.png")
    summary = {
        "steps": int(state["step"]),
        "wall_time_s": round(float(state["wall_time_s"]), 2),
        "device": str(device),
        "best_val_loss": float(state["best_val"]),
        "final_validation": evaluate(model, val_set, loss_fn, device, config.optim.batch_size),
        "data": data_info,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
