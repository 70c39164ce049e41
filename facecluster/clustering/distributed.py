"""One clustering over several processes (ranks, on one node or many) with ``torch.distributed``: gloo between
CPUs, nccl between GPUs. ``cluster.py`` runs this way under ``torchrun``::

    torchrun --nproc_per_node=2 cluster.py --model MODEL.pt --features FEATS --out OUT       # 2 ranks, one node
    torchrun --nnodes=4 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 cluster.py ...

What runs where (:meth:`ClusteringPipeline.cluster` with a :class:`Ranks`):

* every rank reads and preprocesses the faces (the networks gather any face's features);
* rank 0 builds the kNN graph, on every GPU faiss sees on its node (the index sharded over them,
  ``faiss.IndexShards``) or on its CPU, and broadcasts it;
* each rank owns a contiguous range of whole row blocks (:data:`~clustering.inference.ROW_BLOCK` rows) and scores
  its own centres: the Top-K predictor (the predicted k are then all-gathered: every rank's Jaccard reads its
  neighbours' k), the Top-K Jaccard of its rows, the SDT on its centres the graph rule needs, the edge weights,
  the pruning;
* the kept edges are gathered on rank 0, which runs Infomap on the pruned graph and writes the result.

A rank forms exactly the batches one process forms for the same rows (batches never cross a row block, the
per-face table is computed in aligned chunks, a row's Jaccard does not depend on its chunk), so the labels are
those of a one-process run, bit for bit (tested with 2 CPU processes).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .inference import ROW_BLOCK

__all__ = ["Ranks", "init_ranks"]


@dataclass(frozen=True)
class Ranks:
    """This process's place in a ``torch.distributed`` group.

    Attributes:
        rank: this process's rank, 0..world-1 (rank 0 builds the graph and runs Infomap).
        world: the number of ranks.
        device: where collective tensors live (``"cpu"`` for gloo, the rank's ``"cuda:N"`` for nccl).
        row_block: rows per block; the rows are dealt out in whole blocks (tests use small blocks).
    """

    rank: int
    world: int
    device: str = "cpu"
    row_block: int = ROW_BLOCK

    def span(self, n: int) -> tuple[int, int]:
        """The rows ``lo:hi`` this rank scores: a contiguous run of whole row blocks, the blocks dealt out as
        evenly as they go (the last rank's last block may be short; a rank may get none when blocks are few)."""
        blocks = -(-n // self.row_block)
        lo_b, hi_b = self.rank * blocks // self.world, (self.rank + 1) * blocks // self.world
        return min(n, lo_b * self.row_block), min(n, hi_b * self.row_block)

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def all_rows(self, part: np.ndarray, n: int) -> np.ndarray:
        """Every rank's :meth:`span` rows of a per-face array, concatenated on every rank (``all_gather``, padded
        to the longest span: collectives move equal shapes)."""
        spans = [Ranks(r, self.world, self.device, self.row_block).span(n) for r in range(self.world)]
        longest = max(hi - lo for lo, hi in spans)
        pad = np.zeros((longest, *part.shape[1:]), dtype=part.dtype)
        pad[: len(part)] = part
        bufs = [torch.empty_like(self._t(pad)) for _ in range(self.world)]
        dist.all_gather(bufs, self._t(pad))
        return np.concatenate([b.cpu().numpy()[: hi - lo] for b, (lo, hi) in zip(bufs, spans)])

    def broadcast(self, a: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Rank 0's array ``a`` on every rank (the others pass ``None``; ``shape`` and ``dtype`` must match)."""
        t = self._t(a) if self.rank == 0 else torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype,
                                                           device=self.device)
        dist.broadcast(t, src=0)
        return t.cpu().numpy()

    def gather_on_first(self, *parts: np.ndarray) -> tuple[np.ndarray, ...] | None:
        """Each rank's 1-D arrays (of equal length per rank), concatenated in rank order on rank 0 (``None``
        elsewhere): the pruned edges, ``O(E)`` on rank 0 only."""
        sizes = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(self.world)]
        dist.all_gather(sizes, torch.tensor([len(parts[0])], dtype=torch.int64, device=self.device))
        sizes = [int(s) for s in sizes]
        out = []
        for a in parts:
            pad = np.zeros(max(sizes), dtype=a.dtype)
            pad[: len(a)] = a
            bufs = [torch.empty_like(self._t(pad)) for _ in range(self.world)] if self.rank == 0 else None
            dist.gather(self._t(pad), bufs, dst=0)
            if self.rank == 0:
                out.append(np.concatenate([b.cpu().numpy()[:s] for b, s in zip(bufs, sizes)]))
        return tuple(out) if self.rank == 0 else None


def init_ranks(row_block: int = ROW_BLOCK) -> Ranks | None:
    """Join the ``torch.distributed`` group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment): nccl
    when CUDA is there (each rank on its ``LOCAL_RANK`` GPU), gloo otherwise. ``None`` for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), f"cuda:{local}" if cuda else "cpu", row_block)
