"""Labelled face features -> preprocessing -> one faiss kNN graph per split -> per-node subgraph batches.

The split is **by identity** (no person in both parts), seeded. The preprocessing mean is fitted on the training
identities only, and each part gets its own kNN graph, so validation sees exactly what inference on an unseen
collection sees. Targets are the Ada-NETS ``k*`` (:func:`clustering.edges.oracle_k`) and the same-identity pair
labels (:func:`clustering.edges.same_identity`).

A batch is a dict of tensors cut from the graph with **one** :func:`clustering.subgraphs.gather_subgraphs` call per
batch (the dataset's ``__getitems__`` receives the batch's index list; no Python loop over samples)::

    feats  (B, K, d) float32   preprocessed neighbour features, self first
    sims   (B, K)    float32   cosine similarity of each neighbour to the centre
    k_star (B,)      int64     Ada-NETS target k* in 1..K
    same   (B, K)    float32   1 where neighbour s has the centre's identity
    idx    (B,)      int64     centre index inside its split
    adj    (B, K, K) bool      with ``pivot_u``: the centre's pivot-subgraph links (L-GCN; for the GNN baselines),
                               :func:`clustering.graph.pivot_adjacency`

In PyG's terms: :meth:`GraphSplit.data` is a split's kNN graph as a ``torch_geometric.data.Data`` (the datamodule
keeps one per split, :attr:`FaceGraphDataModule.train_data` / ``val_data``), and :func:`as_pyg_batch` turns a batch
into a ``torch_geometric.data.Batch`` of its B subgraphs (dense ``(B, K)`` tensors stay the training format: every
node has exactly K neighbours, and the networks run fastest on them).

Resumable training: the training order is a pure function of ``(seed, epoch)`` (:class:`EpochShuffle`, the seed
being the run's ``seed_everything`` seed) and the train loader is checkpointed with Lightning's loops
(:class:`ResumableLoader`), so a run resumed with ``--ckpt_path last`` sees the batches an uninterrupted run sees,
also from a checkpoint written mid-epoch.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from facecluster.clustering.edges import oracle_k, same_identity
from facecluster.clustering.graph import knn_data, pivot_adjacency, subgraph_batch
from facecluster.clustering.io import InputError, atomic_write, check_k, file_sha256, load_features, load_labels
from facecluster.clustering.knn import knn_search
from facecluster.clustering.preprocess import fit_mean, preprocess
from facecluster.clustering.subgraphs import gather_subgraphs
from facecluster.clustering.synthetic import SyntheticConfig, make_synthetic

__all__ = ["EpochShuffle", "FaceGraphDataModule", "GraphSplit", "ResumableLoader", "SubgraphDataset",
           "as_pyg_batch", "split_by_identity"]

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass
class GraphSplit:
    """One part of the data with its own kNN graph (numpy arrays, row i is face ``rows[i]`` of the input).

    Attributes:
        x: ``(N, d)`` float32 preprocessed features.   nbrs: ``(N, K)`` int64, self first (ids inside this split).
        sims: ``(N, K)`` float32.   labels: ``(N,)`` int64 identities.   k_star: ``(N,)`` int64 oracle Top-K.
        same: ``(N, K)`` bool same-identity pairs.   rows: ``(N,)`` int64 row numbers in the input file.
    """

    x: np.ndarray
    nbrs: np.ndarray
    sims: np.ndarray
    labels: np.ndarray
    k_star: np.ndarray
    same: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def data(self):
        """The split's kNN graph as a PyG ``Data`` (:func:`clustering.graph.knn_data`: ``x``, ``edge_index``
        neighbour -> face, ``edge_attr`` = similarity) with ``y`` (identities), ``k_star`` and ``same`` (per edge)."""
        return knn_data(self.x, self.nbrs, self.sims, y=torch.from_numpy(self.labels),
                        k_star=torch.from_numpy(self.k_star), same=torch.from_numpy(self.same).reshape(-1))


def split_by_identity(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row ids ``(train, val)`` with a seeded ``val_fraction`` of the identities (not faces) in val; both sorted."""
    ids = np.unique(labels)
    n_val = int(round(val_fraction * len(ids)))
    if val_fraction > 0 and not 0 < n_val < len(ids):
        raise InputError(f"val_fraction={val_fraction} of {len(ids)} identities leaves an empty split")
    val_ids = np.random.default_rng(seed).permutation(ids)[:n_val]
    is_val = np.isin(labels, val_ids)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class SubgraphDataset(Dataset):
    """Per-node subgraphs of a :class:`GraphSplit`; ``__getitems__`` gathers a whole batch in one indexing op (and,
    with ``pivot_u``, builds the batch's pivot-subgraph links ``adj`` in one vectorised call)."""

    def __init__(self, split: GraphSplit, pivot_u: int | None = None) -> None:
        self.x = torch.from_numpy(split.x)             # (N, d)
        self.nbrs = torch.from_numpy(split.nbrs)       # (N, K)
        self.sims = torch.from_numpy(split.sims)       # (N, K)
        self.k_star = torch.from_numpy(split.k_star)   # (N,)
        self.same = torch.from_numpy(split.same)       # (N, K) bool
        self.pivot_u = pivot_u

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.int64)                # (B,)
        feats, sims = gather_subgraphs(self.x, self.nbrs, self.sims, idx)  # (B, K, d), (B, K)
        batch = {"feats": feats, "sims": sims, "k_star": self.k_star[idx], "same": self.same[idx].float(), "idx": idx}
        if self.pivot_u:
            batch["adj"] = pivot_adjacency(self.nbrs, idx, self.pivot_u)  # (B, K, K)
        return batch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([i]).items()}


def as_pyg_batch(batch: dict[str, torch.Tensor]):
    """A batch of :class:`SubgraphDataset` as one PyG ``Batch`` of its B subgraphs
    (:func:`clustering.graph.subgraph_batch`): node ``b K + a`` is neighbour a of centre b, with ``x`` its features,
    ``sims`` its similarity to the centre and ``y`` = ``same``; the links are the batch's ``adj`` (a dataset with
    ``pivot_u``), else the star of kNN edges centre <-> neighbour. Also ``idx`` (B,), ``k_star`` (B,) per subgraph."""
    feats = batch["feats"]
    adj = batch.get("adj")
    if adj is None:
        B, K = batch["sims"].shape
        adj = torch.zeros(B, K, K, dtype=torch.bool)
        adj[:, 0, 1:] = adj[:, 1:, 0] = True
    out = subgraph_batch(feats, adj, sims=batch["sims"], y=batch["same"])
    out.idx, out.k_star = batch["idx"], batch["k_star"]
    return out


def collate_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The dataset already returns a collated batch (``__getitems__``); nothing left to do."""
    return batch


class EpochShuffle(RandomSampler):
    """A random order that is a pure function of ``(seed, epoch)``: ``randperm`` with a generator seeded
    ``seed + epoch``, as :class:`~torch.utils.data.DistributedSampler` does (a plain ``RandomSampler`` draws from
    the global RNG, whose state a resumed run does not share). Lightning calls :meth:`set_epoch` before every
    training epoch; under DDP it replaces this sampler (a ``RandomSampler``) with a ``DistributedSampler`` of the
    same seed (``PL_GLOBAL_SEED``)."""

    def __init__(self, data_source, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=gen).tolist()


class ResumableLoader(DataLoader):
    """Train loader that Lightning resumes mid-epoch: its ``state_dict`` (``{"epoch", "batches"}``: the sampler's
    epoch and the batches served in it) is saved with the loops in every checkpoint and given back to
    ``load_state_dict`` when a run restarts inside that epoch; the same order (a function of the epoch) is then
    drawn again and the batches already trained on are skipped (gathered, not trained on: a one-off cost).

    Iteration is lazy: nothing is drawn before the first batch is asked for, i.e. after Lightning's ``set_epoch``.
    (A ``DataLoader`` with workers draws indices as soon as its iterator exists, which Lightning creates before
    ``set_epoch`` on the first epoch of a resumed run.)
    """

    _served = 0
    _resume: dict[str, int] | None = None

    def __iter__(self):
        epoch = getattr(self.sampler, "epoch", 0)
        resume, self._resume = self._resume, None
        skip = resume["batches"] if resume is not None and resume["epoch"] == epoch else 0
        batches = super().__iter__()
        for _ in itertools.islice(batches, skip):
            pass  # trained on before the interruption
        self._served = skip
        for batch in batches:
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(getattr(self.sampler, "epoch", 0)), "batches": self._served}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = dict(state_dict)


class FaceGraphDataModule(pl.LightningDataModule):
    """Per-node subgraph batches of a labelled face collection, split by identity into train and val.

    Args:
        source: ``"synthetic"`` (:func:`clustering.synthetic.make_synthetic` with ``synthetic``) or ``"files"``
            (``features`` + ``labels``).
        features: feature file (``.bin`` needs ``dim``; ``.npy``/``.npz``), for ``source="files"``.
        labels: label file (``.meta``/``.txt``/``.npy``/``.npz``), one identity per feature row.
        dim: feature width of a ``.bin`` file.
        synthetic: generator settings for ``source="synthetic"`` (in a config: ``synthetic: {n_identities: 50}``).
        k: neighbours per face K (self included); linked to the networks' ``k`` by ``train.py``.
        val_fraction: share of the **identities** held out for validation (0: no validation).
        split_seed: seed of the identity split.
        beta: F-beta of the ``k*`` target.
        batch_size: centres per batch.
        num_workers, pin_memory: DataLoader settings.
        cache_dir: where to cache the mean, the split and both kNN graphs (``.npz`` named by a hash of the inputs'
            content, of every parameter that changes them and of the faiss version); ``None`` disables the cache.
        knn: keyword arguments of :func:`clustering.knn.knn_search` (``method``, ``device``, ``threads``, ...).
        pivot_u: also give every batch its pivot-subgraph links ``adj`` with this u (the GNN baselines' ``pivot_u``,
            linked to it by ``train.py``); ``None``: no links.
    """

    def __init__(
        self,
        source: Literal["synthetic", "files"] = "synthetic",
        features: str | None = None,
        labels: str | None = None,
        dim: int | None = None,
        synthetic: SyntheticConfig = SyntheticConfig(),  # noqa: B008  (read-only default)
        k: int = 80,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        beta: float = 0.5,
        batch_size: int = 256,
        num_workers: int = 0,
        pin_memory: bool = False,
        cache_dir: str | None = None,
        knn: dict[str, Any] | None = None,
        pivot_u: int | None = None,
    ) -> None:
        super().__init__()
        if source not in ("synthetic", "files"):
            raise ValueError(f"source must be 'synthetic' or 'files', got {source!r}")
        if source == "files" and (features is None or labels is None):
            raise InputError("source='files' needs both data.features and data.labels")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.source = source
        self.features = features
        self.labels = labels
        self.dim = dim
        self.synthetic = synthetic
        self.k = k
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.beta = beta
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.cache_dir = cache_dir
        self.knn = dict(knn or {})
        self.pivot_u = pivot_u
        self._data: dict = {}
        self._sha256: dict[str, tuple] = {}
        self._checkpoint_mean: np.ndarray | None = None  # a resumed run's, checked against the fit by setup
        self.mean: np.ndarray | None = None
        self.train_graph: GraphSplit | None = None
        self.val_graph: GraphSplit | None = None

    # ---- shape information, available before setup (for argument links) --------------------------------------
    @property
    def feat_dim(self) -> int:
        """Feature width d (from the generator settings, ``dim`` or the file header; the data is not loaded)."""
        return self.feature_dim(self.source, self.features, self.dim, self.synthetic.dim)

    @staticmethod
    def feature_dim(source: str, features: str | None, dim: int | None, synthetic_dim: int) -> int:
        """Feature width from the datamodule's arguments (``train.py`` links it to the networks at parse time):
        ``synthetic.dim``, else ``dim``, else the ``.npy``/``.npz`` header."""
        if source == "synthetic":
            return int(synthetic_dim)
        if dim is not None:
            return int(dim)
        return int(load_features(features, dim, check=False).shape[1])

    # ---- data -----------------------------------------------------------------------------------------------
    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        if self.source == "synthetic":
            return make_synthetic(self.synthetic)
        feats = load_features(self.features, self.dim)
        return feats, load_labels(self.labels, n=feats.shape[0])

    def cache_path(self) -> Path | None:
        """The cache file for the current inputs and parameters (``None`` without ``cache_dir``): named by a hash
        of the inputs' content (the SHA-256 of the feature and label files, not their path, size and time: a
        same-size copy made with ``cp -p`` is another key), every parameter that changes the graphs, and the faiss
        version (another faiss may give other neighbours)."""
        if self.cache_dir is None:
            return None
        import faiss

        key = {
            "version": CACHE_VERSION, "source": self.source, "k": self.k, "val_fraction": self.val_fraction,
            "split_seed": self.split_seed, "knn": self.knn, "faiss": faiss.__version__,
            "data": (self.synthetic.to_dict() if self.source == "synthetic"
                     else {"features": self._content_id(self.features), "labels": self._content_id(self.labels),
                           "dim": self.dim}),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return Path(self.cache_dir) / f"facegraph-{digest}.npz"

    def _content_id(self, path: str) -> str:
        """The SHA-256 of a file's content, hashed once per instance while the file's size, time and inode stay
        the same (``prepare_data`` and ``setup`` both ask)."""
        st = os.stat(path)
        stamp = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        if self._sha256.get(path, (None,))[0] != stamp:
            self._sha256[path] = (stamp, file_sha256(path))
        return self._sha256[path][1]

    def _graphs(self, labels: np.ndarray, feats: np.ndarray) -> dict[str, np.ndarray]:
        """Split, mean and kNN graphs, from the cache when present (written there otherwise)."""
        path = self.cache_path()
        if path is not None and path.exists():
            log.info("loading cached kNN graphs from %s", path)
            with np.load(path, allow_pickle=False) as z:
                return {key: z[key] for key in z.files}
        train_rows, val_rows = split_by_identity(labels, self.val_fraction, self.split_seed)
        check_k(self.k, len(train_rows), "train split")
        mean = fit_mean(feats[train_rows])
        out = {"mean": mean, "train_rows": train_rows, "val_rows": val_rows}
        for part, rows in (("train", train_rows), ("val", val_rows)):
            if len(rows) == 0:
                continue
            check_k(self.k, len(rows), f"{part} split")
            out[f"{part}_nbrs"], out[f"{part}_sims"] = knn_search(preprocess(feats[rows], mean), self.k, self.knn)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda fh: np.savez(fh, **out))
        return out

    def prepare_data(self) -> None:
        """Build the cache once (rank 0) so that the other DDP ranks only read it."""
        path = self.cache_path()
        if path is not None and not path.exists():
            feats, labels = self._load()
            self._graphs(labels, feats)

    def setup(self, stage: str | None = None) -> None:
        if self.train_graph is not None:
            return
        feats, labels = self._load()
        g = self._graphs(labels, feats)
        self.mean = g["mean"].astype(np.float32)
        if self._checkpoint_mean is not None:
            self._check_mean(self._checkpoint_mean)
        parts = {}
        for part in ("train", "val"):
            rows = g[f"{part}_rows"].astype(np.int64)
            if len(rows) == 0:
                parts[part] = None
                continue
            nbrs, lab = g[f"{part}_nbrs"], labels[rows]
            parts[part] = GraphSplit(x=preprocess(feats[rows], self.mean), nbrs=nbrs, sims=g[f"{part}_sims"],
                                     labels=lab, k_star=oracle_k(nbrs, lab, self.beta),
                                     same=same_identity(nbrs, lab), rows=rows)
        self.train_graph, self.val_graph = parts["train"], parts["val"]

    # ---- the kNN graphs in PyG's terms ------------------------------------------------------------------------
    @property
    def train_data(self):
        """The train split's kNN graph as a PyG ``Data`` (:meth:`GraphSplit.data`), built once after ``setup``."""
        return self._pyg("train", self.train_graph)

    @property
    def val_data(self):
        """The val split's kNN graph as a PyG ``Data`` (``None`` without a val split)."""
        return self._pyg("val", self.val_graph)

    def _pyg(self, part: str, split: GraphSplit | None):
        if split is None:
            return None
        if part not in self._data:
            self._data[part] = split.data()
        return self._data[part]

    # ---- loaders --------------------------------------------------------------------------------------------
    def _loader(self, split: GraphSplit, train: bool) -> DataLoader:
        dataset = SubgraphDataset(split, self.pivot_u)
        kwargs = dict(batch_size=self.batch_size, num_workers=self.num_workers, pin_memory=self.pin_memory,
                      collate_fn=collate_batch, persistent_workers=self.num_workers > 0)
        if not train:
            return DataLoader(dataset, shuffle=False, **kwargs)
        # the run's seed (set by seed_everything; what Lightning's DistributedSampler uses under DDP)
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return ResumableLoader(dataset, sampler=EpochShuffle(dataset, seed), **kwargs)

    def train_dataloader(self) -> DataLoader:
        """Shuffled by :class:`EpochShuffle` (a function of the run's seed and the epoch), resumable mid-epoch."""
        return self._loader(self.train_graph, train=True)

    def val_dataloader(self) -> DataLoader | list:
        return [] if self.val_graph is None else self._loader(self.val_graph, train=False)

    # ---- checkpoint: the fitted mean travels with the model ---------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {} if self.mean is None else {"mean": torch.from_numpy(self.mean)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A resumed run's checkpoint: its mean must be the one fitted on this data (the same features, labels,
        split and ``k``: the graphs ``setup`` built use the fit), else an :class:`InputError`, never a silent mix of
        the checkpoint's mean with graphs of another fit. Lightning calls this after ``setup`` on ``fit``; before
        it, the mean is checked when ``setup`` runs."""
        if "mean" not in state_dict:
            return
        mean = np.asarray(state_dict["mean"], dtype=np.float32)
        if self.train_graph is None:
            self._checkpoint_mean = mean
            self.mean = mean
        else:
            self._check_mean(mean)

    def _check_mean(self, mean: np.ndarray) -> None:
        """``mean`` (a checkpoint's) must equal the mean fitted on the data, bit for bit (the fit is deterministic
        for the same data)."""
        if mean.shape != self.mean.shape or not np.array_equal(mean, self.mean):
            diff = (f"max difference {float(np.abs(mean - self.mean).max()):.3g}" if mean.shape == self.mean.shape
                    else f"shape {mean.shape}, the fit's {self.mean.shape}")
            where = self.features if self.source == "files" else "the synthetic data"
            raise InputError(f"{where}: the checkpoint's preprocessing mean differs from the one fitted on this data "
                             f"({diff}): the data, the split or the labels changed since the checkpoint; resume "
                             f"with the data it was trained on, or start a new run")
