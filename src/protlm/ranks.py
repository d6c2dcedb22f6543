"""Inference split across the processes of `torchrun` (one GPU each, several nodes too), one output.

`torchrun --nproc-per-node N -m protlm embed IN --out OUT` (and `predict`) runs N copies of the command.
Every rank reads the whole input (so its skip report and its errors are the same everywhere), keeps
the records k with k % world == rank, and writes what it computed, in input order, to a spool file
beside the output (`.OUT.rank-R-of-W`). When every rank is done, rank 0 reads the spools round-robin,
which is input order again, and writes OUT through the command's usual writer; the spools are
removed. So the output is the one a single process writes, and it is atomic: when any rank fails,
every rank stops, no spool is left and no OUT is written.

The ranks agree through `torch.distributed` (gloo on the CPU, NCCL on GPUs), set up from torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Without torchrun, world is 1 and
nothing of this runs. The spools go through the shared filesystem the output is written to.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch

from protlm.errors import ProtlmError

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @staticmethod
    def from_env() -> Ranks:
        """torchrun's RANK / WORLD_SIZE / LOCAL_RANK; one process (0 of 1) without them."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            raise ProtlmError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (as torchrun sets them)") from None
        if world < 1 or not 0 <= rank < world:
            raise ProtlmError(f"RANK {rank} is not within WORLD_SIZE {world}")
        return Ranks(rank, world, local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, spec: str) -> str:
        """`auto` / `cuda` under torchrun: this process's own GPU (LOCAL_RANK)."""
        if self.world > 1 and spec in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return spec

    def mine(self, items: Iterable[T]) -> Iterator[T]:
        """The items k with k % world == rank, in order."""
        for k, item in enumerate(items):
            if k % self.world == self.rank:
                yield item

    def spool(self, out: Path, rank: int | None = None) -> Path:
        r = self.rank if rank is None else rank
        return out.parent / f".{out.name}.rank-{r}-of-{self.world}"


def interleave(parts: list[Iterator[T]]) -> Iterator[T]:
    """Round-robin over the ranks' spools: item k comes from part k % world, so input order again."""
    while True:
        for k, part in enumerate(parts):
            item = next(part, None)
            if item is None:
                # a later part may be one shorter, never a longer one: the rest must be empty too
                if any(next(p, None) is not None for p in parts[k + 1 :]):
                    raise ProtlmError("the ranks' spools do not add up (a spool was changed while merging)")
                return
            yield item


@contextlib.contextmanager
def _process_group(ranks: Ranks, device: torch.device):
    import torch.distributed as dist

    if dist.is_initialized():
        yield dist
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world, timeout=timedelta(hours=2))
    try:
        yield dist
    finally:
        dist.destroy_process_group()


def run_sharded(ranks: Ranks, out: Path, device: torch.device, work: Callable[[Path], None],
                merge: Callable[[list[Path]], None]) -> None:  # fmt: skip
    """`work(spool)` on every rank writes its share to its spool; when all succeeded, rank 0 runs
    `merge(spools)` into `out`. Any rank's error stops all of them (each raises: the failing rank its
    own error, the others one naming it), and every spool is removed either way."""
    out.parent.mkdir(parents=True, exist_ok=True)
    spool = ranks.spool(out)
    with _process_group(ranks, device) as dist:
        error: BaseException | None = None
        try:
            work(spool)
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - reported to every rank, then re-raised
            error = e
        status = torch.tensor([0 if error is None else ranks.rank + 1], device=device)
        dist.all_reduce(status, op=dist.ReduceOp.MAX)
        failed = int(status.item())
        try:
            if error is not None:
                raise error
            if failed:
                raise ProtlmError(f"rank {failed - 1} failed (its message names the cause); no output written")
            if ranks.main:
                merge([ranks.spool(out, r) for r in range(ranks.world)])
        finally:
            dist.barrier()  # rank 0 has read every spool (or failed) before any is removed
            spool.unlink(missing_ok=True)
