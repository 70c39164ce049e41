"""The README's figures, as PNG, from the results the benchmarks wrote and the shipped model.

    python benchmarks/plots.py [--results benchmarks/results] [--model pretrained/dlib128.pt] [--out docs/img]
    make plots

* ``scale_ladder.png``: pairwise and BCubed F against the collection size for every method of every
  ``scale*.json`` (``benchmarks/scale.py``), whatever rows they hold; the train file, on which the baselines are
  tuned, is left out. The size is the rung's faces when the file records them, else its identities.
* ``f_vs_threshold.png``: pairwise and BCubed F on the validation identities (alone, and among the training
  faces where the record has both) against the pruning threshold, for each Jaccard variant and combine rule of a
  model file's ``export.py --tune`` grid (its meta), the chosen point marked.
* ``cluster_sizes.png``: how many clusters of each size the model makes on lfw-dlib test, next to the true
  identities' sizes (needs lfw-dlib; skipped with a message without it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecluster.clustering.pretrained import default_model_path, lfw_dlib_dir, load_lfw_dlib, repo_relative  # noqa: E402

METRICS = (("pairwise_f", "pairwise F (F_P)"), ("bcubed_f", "BCubed F (F_B)"))
# legend names of the benchmarks' method keys (other names are shown as the files write them)
LABELS = {"knn-infomap": "cosine kNN + Infomap", "hdbscan": "HDBSCAN", "fc-es": "FC-ES",
          "topk-jaccard-oracle": "ceiling: Top-K Jaccard, oracle k*", "method": "this method"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def ladder_points(paths: list[Path]) -> tuple[dict[str, list[tuple[int, str, float, float]]], str]:
    """``{method: [(size, rung, F_P, F_B), ...] sorted by size}`` from the ``scale*.json`` files, and the size's
    unit ("faces" when every file records them, else "identities"). Methods are named by ``LABELS``; one named
    alike in two files is told apart by the file's name."""
    files = {p: json.loads(p.read_text()) for p in paths}
    unit = "faces" if all("faces" in d.get("protocol", {}) for d in files.values()) else "identities"
    names = {}
    for p, d in files.items():
        for r in d["records"]:
            names.setdefault(r["method"], set()).add(p)
    series: dict[str, list] = {}
    for p, d in files.items():
        proto = d.get("protocol", {})
        for r in d["records"]:
            split = r["split"]
            if split == "train" or split not in proto.get("rungs", {}):
                continue
            size = proto["faces"][split] if unit == "faces" else proto["rungs"][split]["n_identities"]
            label = LABELS.get(r["method"], r["method"])
            name = label if len(names[r["method"]]) == 1 else f"{label} ({p.stem})"
            series.setdefault(name, []).append((int(size), split, r["pairwise_f"], r["bcubed_f"]))
    return {m: sorted(v) for m, v in series.items()}, unit


def plot_scale_ladder(paths: list[Path], out: Path) -> Path:
    """``scale_ladder.png``: F_P and F_B against the collection size, one line per method."""
    plt = _pyplot()
    series, unit = ladder_points(paths)
    if not series:
        raise ValueError(f"no rung rows in {', '.join(map(str, paths))}")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharex=True)
    cmap = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
    markers = "osD^v<>pXh*"
    for i, (method, pts) in enumerate(series.items()):
        x = [p[0] for p in pts]
        for ax, col in zip(axes, (2, 3)):
            ax.plot(x, [p[col] for p in pts], marker=markers[i % len(markers)], color=cmap(i % cmap.N),
                    label=method, lw=1.5, ms=5)
    rungs = sorted({(p[0], p[1]) for pts in series.values() for p in pts})
    for ax, (_, title) in zip(axes, METRICS):
        ax.set_xscale("log")
        ax.set_xticks([r[0] for r in rungs], [f"{r[1]}\n{r[0]:,}" for r in rungs])
        ax.minorticks_off()
        ax.set_xlabel(f"collection ({unit})")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("F on the rung (tuned on the train file only)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("Scale ladder: synthetic collections of growing size (benchmarks/scale.py)")
    fig.tight_layout(rect=(0, 0.04 + 0.028 * ((len(series) + 1) // 2), 1, 1))
    path = out / "scale_ladder.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_f_vs_threshold(model: Path, out: Path) -> Path:
    """``f_vs_threshold.png``: the ``export.py --tune`` grid of ``model`` (its meta), F against the threshold for
    each (Jaccard variant, combine rule) on each scored set (the validation identities alone, solid; among the
    training faces, dashed, where the record has them), the chosen point marked."""
    from facecluster.clustering.pipeline import ClusteringPipeline
    from facecluster.commands.export import grid_value, tuning_summary

    tuning = ClusteringPipeline.load(str(model), device="cpu").meta.get("tuning")
    if not tuning:
        raise ValueError(f"{model}: no export.py --tune grid in its meta")
    plt = _pyplot()
    rules: dict[tuple[str, str], list[dict]] = {}
    for r in tuning["grid"]:
        rules.setdefault((r["jaccard"], r["combine"]), []).append(r)
    chosen = tuning_summary(tuning)
    sets = list(chosen["sets"])  # "val", and "val+train" (the same faces among the training faces) since issue 19
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, (key, title) in zip(axes, METRICS):
        for (jac, comb), rows in rules.items():
            rows = sorted(rows, key=lambda r: r["threshold"])
            weight = ("Top-K Jaccard" if jac == "topk" else f"Jaccard {jac}" if jac != "none" else "edge probability")
            label = f"{weight} x SDT" if comb == "product" else weight
            line, = ax.plot([r["threshold"] for r in rows], [grid_value(r, key, sets[0]) for r in rows], marker=".",
                            label=label)
            for name in sets[1:]:
                ax.plot([r["threshold"] for r in rows], [grid_value(r, key, name) for r in rows], ls="--",
                        color=line.get_color())
        t = chosen["graph"]["threshold"]
        ax.plot([t] * len(sets), [chosen["sets"][n][key] for n in sets], "k*", ms=14,
                label="chosen (best worst-set mean of F_P and F_B)" if len(sets) > 1 else "chosen")
        ax.set_xlabel("pruning threshold")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    faces = chosen["sets"][sets[0]]["n_faces"]
    axes[0].set_ylabel(f"F on the validation identities ({faces:,} faces)" + (
        "; dashed: among the training faces" if len(sets) > 1 else ""))
    axes[1].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Graph rule and threshold chosen by export.py --tune: {model.name}")
    fig.tight_layout()
    path = out / "f_vs_threshold.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


SIZE_BINS = (1, 2, 3, 5, 9, 17, 33, 65, 129, 257, 513, 1025)  # [1], [2], [3, 4], [5, 8], ...


def size_histogram(labels: np.ndarray, bins: tuple[int, ...] = SIZE_BINS) -> np.ndarray:
    """Clusters per size bin ``[bins[i], bins[i+1])`` (the last bin open-ended) of a labelling ``(N,)``."""
    sizes = np.unique(labels, return_counts=True)[1]
    return np.bincount(np.searchsorted(bins, sizes, side="right") - 1, minlength=len(bins))


def plot_cluster_sizes(true: np.ndarray, pred: np.ndarray, out: Path, title: str) -> Path:
    """``cluster_sizes.png``: clusters per size bin, predicted next to true."""
    plt = _pyplot()
    t, p = size_histogram(true), size_histogram(pred)
    last = int(max(np.nonzero(t)[0].max(), np.nonzero(p)[0].max())) + 1
    names = [str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}" for lo, hi in zip(SIZE_BINS, SIZE_BINS[1:])]
    names.append(f"{SIZE_BINS[-1]}+")
    x = np.arange(last)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.bar(x - 0.2, t[:last], 0.4, label=f"true identities ({len(np.unique(true)):,})", color="0.6")
    ax.bar(x + 0.2, p[:last], 0.4, label=f"predicted clusters ({len(np.unique(pred)):,})", color="tab:blue")
    ax.set_yscale("log")
    ax.set_xticks(x, names[:last])
    ax.set_xlabel("cluster size (faces)")
    ax.set_ylabel("clusters")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path = out / "cluster_sizes.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="folder of the scale*.json")
    ap.add_argument("--model", default=str(default_model_path()), help="model file (its --tune grid; lfw-dlib)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model)
    written = [plot_scale_ladder(sorted(Path(args.results).glob("scale*.json")), out),
               plot_f_vs_threshold(model, out)]
    folder = lfw_dlib_dir()
    if folder is None:
        print("[skip] cluster_sizes.png: lfw-dlib not found", file=sys.stderr)
    else:
        from facecluster.clustering.pipeline import ClusteringPipeline

        feats, labels = load_lfw_dlib("test", folder)
        pred = ClusteringPipeline.load(str(model), device="cpu")(feats)
        written.append(plot_cluster_sizes(labels, pred, out, f"Cluster sizes on lfw-dlib test ({len(labels):,} "
                                                             f"faces): {model.name} against the truth"))
    for path in written:
        print(f"wrote {repo_relative(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
