"""Training across processes: torchrun's environment, the process group, and what ranks agree on.

`torchrun --nproc_per_node N -m training.cli fit ...` starts N copies of `ae-train fit`; each finds
RANK, WORLD_SIZE and LOCAL_RANK in its environment. Without them (or with a world of one) a run is
a single process and nothing here talks to anyone.

`optim.batch_size` is per rank: one optimizer step sees a global batch of batch_size * world_size
items, cut from one order every rank agrees on, each rank taking its own consecutive slice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler


@dataclass(frozen=True)
class Ranks:
    """A process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """More than one process trains: gradients, the stop decision and logged losses are shared."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run folder, logs, validates and shows progress."""
        return self.rank == 0


def ranks_from_env(environ: Mapping[str, str] = os.environ) -> Ranks:
    """The ranks torchrun sets; a single process when RANK or WORLD_SIZE is missing."""
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return Ranks()
    return Ranks(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", "0")))


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """One GPU per process on a node: CUDA becomes `cuda:LOCAL_RANK`; CPU stays CPU."""
    if device.type != "cuda" or not ranks.distributed:
        return device
    local = torch.device("cuda", ranks.local_rank)
    torch.cuda.set_device(local)
    return local


@contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the other ranks for the duration of a run (NCCL on GPUs, gloo on CPU); no-op alone."""
    if not ranks.distributed:
        yield
        return
    # MASTER_ADDR and MASTER_PORT come from torchrun through the default env:// rendezvous.
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.world_size)
    try:
        yield
        # Every rank waits for the others' runs to end (rank 0 still validates and writes the summary)
        # before any tears the group down: a rank leaving while its peer still holds the connection
        # aborted in gloo's teardown ("terminate called without an active exception") under load.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def data_parallel(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """The module to train through: DDP (gradients averaged across ranks) or the model itself alone.

    Keep the plain model for state dicts, validation and samples: DDP prefixes keys with `module.`,
    and its forward may talk to the other ranks, which rank 0 must not do alone.
    """
    if not ranks.distributed:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def main_rank_value(value: float, device: torch.device) -> float:
    """Rank 0's `value` on every rank (a broadcast; NCCL needs the tensor on the GPU)."""
    shared = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(shared, src=0)
    return float(shared.item())


def mean_over_ranks(value: Tensor, ranks: Ranks) -> Tensor:
    """The mean of a scalar over all ranks (gloo has no AVG reduction, hence SUM / world size)."""
    if not ranks.distributed:
        return value
    total = value.detach().float().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / ranks.world_size


class GlobalBatchShard(Sampler[list[int]]):
    """A rank's slice of each global batch, so N ranks x batch B step exactly as 1 rank x N*B.

    Every rank computes the same order of the training set per pass (in order, or a permutation
    seeded by seed and pass number) and cuts it into global batches of B * N; rank r takes items
    [r*B, (r+1)*B) of each. With DDP averaging gradients and a loss that is a mean over the batch,
    a step then sees the gradient of the whole global batch. Incomplete global batches are dropped.
    """

    def __init__(self, size: int, batch_size: int, ranks: Ranks, shuffle: bool, seed: int) -> None:
        self.size = size
        self.batch_size = batch_size
        self.ranks = ranks
        self.shuffle = shuffle
        self.seed = seed
        self.passes = 0
        if len(self) == 0:
            global_batch = batch_size * ranks.world_size
            raise ValueError(
                f"{size} training items do not fill one global batch of {global_batch} "
                f"(optim.batch_size {batch_size} x {ranks.world_size} ranks)"
            )

    def __len__(self) -> int:
        return self.size // (self.batch_size * self.ranks.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.passes))
        else:
            order = torch.arange(self.size)
        self.passes += 1
        global_batch = self.batch_size * self.ranks.world_size
        for start in range(0, len(self) * global_batch, global_batch):
            first = start + self.ranks.rank * self.batch_size
            yield order[first : first + self.batch_size].tolist()
