"""Row gathers into a reused buffer (clustering.subgraphs.gather_rows) and the loops that use one."""
from __future__ import annotations

import numpy as np
import torch

from facecluster.clustering.knn import _exact_rescore
from facecluster.clustering.subgraphs import gather_rows, gather_subgraphs


def test_gather_rows_into_a_buffer_is_the_plain_gather() -> None:
    """Any id shape and dtype: the rows of x[ids], written into the buffer (the result is a view of it, so the
    next call overwrites it) and nothing past ``ids.numel()`` rows touched."""
    x = torch.randn(50, 6)
    buf = torch.full((40, 6), 7.0)
    for ids in (torch.tensor([3, 3, 49, 0]), torch.randint(0, 50, (4, 5), dtype=torch.int32),
                torch.randint(0, 50, (2, 3, 4))):
        out = gather_rows(x, ids, buf)
        assert out.shape == (*ids.shape, 6) and out.data_ptr() == buf.data_ptr()
        torch.testing.assert_close(out, x[ids.long()], rtol=0, atol=0)
        assert (buf[ids.numel():] == 7.0).all()
    torch.testing.assert_close(gather_rows(x, ids), x[ids], rtol=0, atol=0)  # no buffer: a new tensor
    nbrs, sims = torch.randint(0, 50, (50, 5), dtype=torch.int32), torch.rand(50, 5)
    idx = torch.tensor([4, 0, 4])
    feats, s = gather_subgraphs(x, nbrs, sims, idx, buf)
    torch.testing.assert_close(feats, x[nbrs[idx].long()], rtol=0, atol=0)
    torch.testing.assert_close(s, sims[idx], rtol=0, atol=0)


def test_exact_rescore_over_blocks_with_empty_slots() -> None:
    """The re-scoring of a quantised index's candidates, several blocks (the last one short) through one buffer:
    the k best by exact inner product, sorted, empty slots (-1) last with similarity -1."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = rng.integers(0, 200, (23, 12))
    ids[:, 9:] = -1
    ids[5] = np.concatenate([rng.permutation(200)[:3], np.full(9, -1)])  # fewer real candidates than k
    out_i, out_s = _exact_rescore(x, x[:23], ids, 4, block=5)
    for r in range(23):
        real = ids[r][ids[r] >= 0]
        score = x[real] @ x[r]
        best = np.argsort(-score, kind="stable")[:4]
        n_real = min(4, len(real))
        np.testing.assert_array_equal(out_i[r, :n_real], real[best][:n_real])
        np.testing.assert_allclose(out_s[r, :n_real], score[best][:n_real], rtol=0, atol=1e-6)
        assert (out_i[r, n_real:] == -1).all() and (out_s[r, n_real:] == -1).all()
