"""The kNN settings: :class:`KnnConfig`, one frozen dataclass (checked when made) that the model file stores as a
dict, ``cluster.py --knn-method`` and the datamodule's ``knn`` block derive from, and :mod:`clustering.knn` runs.
No faiss import here (``cluster.py`` reads the choices before anything heavy is imported)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal, get_args, get_type_hints

__all__ = ["KnnConfig", "KNN_METHODS", "QUANTISED", "check_knn_options"]

KnnMethod = Literal["auto", "flat", "ivf", "ivfsq", "ivfpq", "hnsw"]
KNN_METHODS: tuple[str, ...] = get_args(KnnMethod)
QUANTISED = ("ivfsq", "ivfpq")  # indexes whose similarities are approximate: re-scored exactly


@dataclass(frozen=True)
class KnnConfig:
    """How the kNN graph is searched; checked when made (``ValueError`` naming the field).

    Attributes:
        method: ``"auto"`` (flat up to flat_max faces, IVF-SQ8 above, IVF-PQ from pq_min), ``"flat"``, ``"ivf"``,
            ``"ivfsq"``, ``"ivfpq"`` or ``"hnsw"``.
        flat_max: largest N that "auto" searches exactly on a CPU.
        gpu_flat_max: the same on a GPU (brute force there is ~100x faster than on a CPU).
        pq_min: smallest N for which "auto" uses IVF-PQ (32 bytes per face) instead of IVF-SQ8 (d bytes).
        nlist: IVF lists (None: 4 sqrt(N), at most N / 39).
        nprobe: IVF lists probed per query.
        pq_m: IVF-PQ bytes per face (sub-quantisers of 8 bits; must divide d).
        refine: a quantised index (ivfsq, ivfpq) fetches refine x K candidates, re-scored by exact cosine.
        expand: rounds of neighbour expansion after an approximate search (not ``flat``): each face's list merged
            with its reverse neighbours and its ``expand_width`` nearest neighbours' own ``expand_width`` nearest,
            re-scored by exact cosine, the best K kept (:func:`~clustering.knn.expand_neighbours`); 0: off.
        expand_width: neighbours followed per face and per neighbour in each expansion round.
        research: with ``expand >= 2``, the share of faces (0..1) searched again exactly after the first expansion
            round: those whose nearest neighbour is the least similar (faces whose identity-mates sit in lists
            the index did not probe); the remaining rounds carry what they found to those mates.
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search breadth (at least 2K is used).
        seed: seed of the IVF training sample.
        threads: faiss OpenMP threads (None: faiss's own).
    """

    method: KnnMethod = "auto"
    flat_max: int = 300_000
    gpu_flat_max: int = 3_000_000
    pq_min: int = 20_000_000
    nlist: int | None = None
    nprobe: int = 64
    pq_m: int = 32
    refine: int = 2
    expand: int = 2
    expand_width: int = 10
    research: float = 0.1
    hnsw_m: int = 32
    ef_search: int = 128
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.method not in KNN_METHODS:
            raise ValueError(f"unknown kNN method {self.method!r} ({', '.join(KNN_METHODS)})")
        for f in fields(self):
            if f.name == "method":
                continue
            if f.name == "research":
                if isinstance(self.research, bool) or not isinstance(self.research, (int, float)) \
                        or not 0 <= self.research <= 1:
                    raise ValueError(f"kNN option research must be a share in [0, 1], got {self.research!r}")
                continue
            value, lo = getattr(self, f.name), 0 if f.name in ("seed", "expand") else 1
            if value is None and f.name in ("nlist", "threads"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ValueError(f"kNN option {f.name} must be an integer >= {lo}, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, options: dict | None) -> "KnnConfig":
        """The config of a model file's ``knn`` dict (any subset of the fields: files written before a field
        existed get its default); ``ValueError`` for an unknown key or a bad value."""
        if options is None:
            return cls()
        if isinstance(options, KnnConfig):
            return options
        if not isinstance(options, dict):
            raise ValueError(f"kNN options must be a dict, got {type(options).__name__}")
        unknown = sorted(set(options) - set(get_type_hints(cls)))
        if unknown:
            raise ValueError(f"unknown kNN option {unknown[0]!r} (known: {', '.join(get_type_hints(cls))})")
        return cls(**options)


def check_knn_options(options: dict) -> None:
    """Raise ``ValueError`` (naming the option) unless ``options`` is a valid :class:`KnnConfig` dict."""
    KnnConfig.from_dict(options)
