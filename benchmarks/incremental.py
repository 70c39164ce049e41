"""Incremental clustering against clustering all at once, on lfw-dlib test; prints a Markdown table.

    python benchmarks/incremental.py --model artifacts/lfw_seed0.pt [--fraction 0.8] [--seed 0]

Clusters a random ``fraction`` of the faces with ``cluster.py``, adds the rest with ``cluster.py --assign-to``
(the earlier faces keep their ids), and compares the final metrics with one ``cluster.py`` run over all faces.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT  # noqa: I001
from facecluster.clustering.pretrained import load_lfw_dlib


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--fraction", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    feats, labels = load_lfw_dlib("test")
    perm = np.random.default_rng(args.seed).permutation(len(feats))
    cut = int(round(args.fraction * len(feats)))
    first, rest = np.sort(perm[:cut]), np.sort(perm[cut:])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for name, idx in (("all", np.arange(len(feats))), ("first", first), ("rest", rest)):
            np.save(t / f"{name}.npy", feats[idx])
            np.save(t / f"{name}_y.npy", labels[idx])

        def run(*extra: str, out: str) -> dict:
            cmd = [sys.executable, str(ROOT / "cluster.py"), "--model", args.model, *extra, "--out", str(t / out),
                   "--metrics-json", str(t / f"{out}.metrics.json")]
            subprocess.run(cmd, check=True, cwd=ROOT)
            return json.loads((t / f"{out}.metrics.json").read_text())

        rows.append(("all faces at once", run("--features", str(t / "all.npy"), "--labels", str(t / "all_y.npy"),
                                              out="all.txt")))
        run("--features", str(t / "first.npy"), "--labels", str(t / "first_y.npy"), out="first.txt")
        rows.append((f"{args.fraction:.0%} first, then {1 - args.fraction:.0%} added with --assign-to",
                     run("--features", str(t / "rest.npy"), "--labels", str(t / "rest_y.npy"), "--assign-to",
                         str(t / "first.txt"), "--previous-features", str(t / "first.npy"), "--previous-labels",
                         str(t / "first_y.npy"), out="inc.txt")))
    print("| lfw-dlib test | F_P | F_B | NMI | clusters |\n|---|---|---|---|---|")
    for name, m in rows:
        print(f"| {name} | {m['pairwise']['f']:.4f} | {m['bcubed']['f']:.4f} | {m['nmi']:.4f} | {m['n_clusters']} |")


if __name__ == "__main__":
    main()
