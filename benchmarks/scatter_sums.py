"""CPU time of the ragged Top-K intersection sums (``clustering.edges.intersections``): the per-pair reduction by
``torch_geometric.utils.scatter`` (what the code uses; torch-scatter when installed) against the hand-written
``index_add_`` it replaced and ``torch_geometric.utils.segment`` (CSR), interleaved in one process.

    OMP_NUM_THREADS=1 python benchmarks/scatter_sums.py --n 100000 --reps 2

Seeded synthetic 256-d faces, K = 80, k = ceil(k*/2) (mean k under 0.4 K: the ragged path that
``intersections`` takes by itself). After one untimed warm-up call, CPU seconds (``time.process_time``) per call,
so that other jobs on a shared machine count less than in wall-clock time; all three give the same sums (checked).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import facecluster.clustering.edges as E  # noqa: E402


def _ragged_sums_with(reduce: str):
    """``clustering.edges._ragged_sums`` with its per-pair reduction done by ``reduce``."""

    def sums(nb, ph, kt, own, cr, n, dense_words):
        from torch_geometric.utils import scatter, segment

        kk = nb.shape[1]
        j = own.reshape(-1)
        lens = kt[j]
        pair = torch.repeat_interleave(torch.arange(j.numel()), lens)
        t = torch.arange(pair.numel()) - (torch.cumsum(lens, 0) - lens)[pair]
        jt = j[pair] * kk + t
        g = dense_words[(pair // kk) * n + nb.view(-1)[jt]].view(torch.float32).view(-1, 2)
        gp, gm = g[:, 0], g[:, 1]
        terms = (gp, ph.view(-1)[jt] * gm, gm)
        if reduce == "index_add_":  # the hand-written code before
            out = [torch.zeros(j.numel()).index_add_(0, pair, v) for v in terms]
        elif reduce == "scatter":
            s = scatter(torch.stack(terms, 1), pair, dim=0, dim_size=j.numel(), reduce="sum")
            out = s.unbind(1)
        else:  # pair is sorted: a CSR segment reduction
            s = segment(torch.stack(terms, 1), torch.cat([lens.new_zeros(1), torch.cumsum(lens, 0)]), reduce="sum")
            out = s.unbind(1)
        return tuple(v.reshape(cr, kk) for v in out)

    return sums


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    from facecluster.clustering.knn import knn_search
    from facecluster.clustering.preprocess import fit_mean, preprocess
    from facecluster.clustering.synthetic import make_synthetic

    feats, labels = make_synthetic(n_identities=max(10, round(args.n / 7.4)), seed=0, dim=256)
    feats, labels = feats[:args.n], labels[:args.n]
    nbrs, sims = knn_search(preprocess(feats, fit_mean(feats)), 80, method="flat")
    k = (E.oracle_k(nbrs, labels) + 1) // 2
    p_hat = E.row_normalise(E.edge_prob(sims))
    print(f"N {args.n}, mean k {k.mean():.1f}, torch threads {torch.get_num_threads()}; CPU s per call")
    times: dict[str, list[float]] = {"index_add_": [], "scatter": [], "segment": []}
    ref = None
    E.intersections(nbrs, p_hat, k)  # warm-up, untimed
    for rep in range(args.reps):
        names = list(times)
        for name in names[rep % 3:] + names[:rep % 3]:  # a different one first in each repetition
            E._ragged_sums = _ragged_sums_with(name)
            t0 = time.process_time()
            out = E.intersections(nbrs, p_hat, k)
            times[name].append(time.process_time() - t0)
            ref = ref or out
            assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(ref, out)), name
        print(rep, {name: round(v[-1], 2) for name, v in times.items()}, flush=True)
    print("min / median:", {name: (round(min(v), 2), round(float(np.median(v)), 2)) for name, v in times.items()})


if __name__ == "__main__":
    main()
