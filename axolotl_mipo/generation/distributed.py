"""Rank, world size and a barrier, for generation split across processes.

Accelerate's ``PartialState`` does not start a process group for several CPU
processes unless told to, so this reads the launcher's environment
(``torchrun`` / ``accelerate launch`` set ``RANK`` and ``WORLD_SIZE``) and
starts one itself when needed: NCCL on GPUs, gloo otherwise.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    @contextmanager
    def main_first(self):
        """Rank 0 runs the body first (e.g. fills a cache); the others then run it and read the cache."""
        if not self.is_main:
            self.barrier()
        try:
            yield
        finally:
            if self.is_main:
                self.barrier()


def dist_info() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, 0)
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
