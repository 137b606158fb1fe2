"""Data-parallel training across processes started by ``torchrun``.

    torchrun --standalone --nproc_per_node=2 train.py

``train.py`` calls :func:`init_distributed` first (it reads the RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT that torchrun sets; gloo on CPU, nccl on CUDA) and :func:`cleanup` last.
A :class:`~papers.core.trainer.Trainer` created in between wraps the model in DDP, gives each process
its share of every batch and writes checkpoints and logs from rank 0 only. Without a process group
every helper describes a single process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment; False when there is none.

    ``backend`` defaults to nccl when CUDA is available (each process then uses GPU LOCAL_RANK)
    and gloo otherwise.
    """
    if is_distributed():
        return True
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK), 0 without torchrun."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process() -> bool:
    """True on rank 0, the process that writes files; also True without a process group."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place; returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def cleanup() -> None:
    """Leave the process group, if one was joined."""
    if is_distributed():
        dist.destroy_process_group()
