"""Tiny CPU tests of the networks in ``models/``."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch
import torch.nn.functional as F

from facecluster.models import (LGCN, SDT, LGCNConfig, NeighbourEmbedding, PivotGAT, PivotGATConfig, SDTConfig,
                    SparseDiffAttention, TopKConfig, TopKPredictor, topk_mask)
from facecluster.models.config import config_from_dict
from facecluster.models.diff_attention import TopkPlan


def _neighbours(B: int, K: int, Fd: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random unit features sorted by cosine to the centre, self first: x (B, K, F), sims (B, K)."""
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(B, K, Fd, generator=g), dim=-1)
    sims = (x * x[:, :1]).sum(-1)  # (B, K), sims[:, 0] == 1
    order = sims.argsort(dim=1, descending=True, stable=True)
    x = x.gather(1, order[..., None].expand_as(x))
    return x, sims.gather(1, order)


# ---------------------------------------------------------------- topk_mask


def test_topk_mask_matches_torch_topk() -> None:
    torch.manual_seed(0)
    B, H, T = 4, 3, 7
    scores = torch.randn(B, H, T, T)
    k = torch.tensor([1, 3, 7, 20])  # per batch element, incl. k > T
    keep = topk_mask(scores, k)
    assert keep.shape == scores.shape and keep.dtype == torch.bool
    for b in range(B):
        kb = min(int(k[b]), T)
        assert (keep[b].sum(-1) == kb).all()
        ref = torch.zeros(H, T, T, dtype=torch.bool).scatter(-1, scores[b].topk(kb, dim=-1).indices, True)
        assert torch.equal(keep[b], ref)


@pytest.mark.parametrize("batch", ["one_k", "few_k", "many_k"])
def test_topk_mask_equals_a_stable_sort_on_every_path(batch: str) -> None:
    """Against the definition (stable descending sort, first k kept) on all of topk_mask's paths: one k per batch
    (grouped, from either end), a few distinct k (grouped), many distinct k (one sorted top-k); with ties,
    -inf (padding) and NaN scores."""
    g = torch.Generator().manual_seed({"one_k": 0, "few_k": 1, "many_k": 2}[batch])
    for trial in range(60):
        T = int(torch.randint(1, 24, (), generator=g))
        B = 12 if batch == "many_k" else 5
        scores = torch.randn(B, 2, T, T, generator=g)
        if trial % 3 == 0:
            scores = torch.randint(0, 3, (B, 2, T, T), generator=g).float()  # many ties
        if trial % 4 == 1:
            scores[scores > 1] = float("-inf")
        if trial % 5 == 2:
            scores[scores < -1] = float("nan")
        if batch == "one_k":
            k = torch.randint(0, T + 3, (), generator=g).expand(B)
        elif batch == "few_k":
            k = torch.randint(0, T + 3, (2,), generator=g).repeat_interleave(3)[:B]
        else:
            k = torch.arange(B) % (T + 2)
        keep = topk_mask(scores, k)
        key = scores.nan_to_num(nan=float("-inf"))
        order = torch.sort(-key, dim=-1, stable=True).indices
        rank = torch.empty_like(order).scatter_(-1, order, torch.arange(T).expand_as(order))
        assert torch.equal(keep, rank < k.clamp(1, T).view(B, 1, 1, 1)), (trial, T, k)


def test_topk_mask_none_clamp_and_ties() -> None:
    scores = torch.zeros(2, 5, 5)  # all ties -> the lowest indices win
    assert topk_mask(scores, None).all()
    keep = topk_mask(scores, torch.tensor([0, 2]))  # 0 is clamped to 1
    assert torch.equal(keep[0], torch.tensor([True, False, False, False, False]).expand(5, 5))
    assert torch.equal(keep[1], torch.tensor([True, True, False, False, False]).expand(5, 5))


# ---------------------------------------------------------------- SparseDiffAttention


def test_lambda_zero_reduces_to_sparse_softmax_attention() -> None:
    torch.manual_seed(0)
    B, T, D, H = 3, 6, 16, 2
    attn = SparseDiffAttention(D, H, lambda_init=0.0).eval()
    with torch.no_grad():
        attn.lambda_q2.copy_(attn.lambda_q1)
        attn.lambda_k2.copy_(attn.lambda_k1)
        attn.subln.weight.uniform_(0.5, 1.5)
    assert attn.lambda_full.abs().item() < 1e-7
    x = torch.randn(B, T, D)
    k = torch.tensor([2, 4, 9])
    hd = D // H // 2
    # explicit reference: first sub-map of every head only
    q1 = (x @ attn.q_proj.weight.T).view(B, T, 2 * H, hd).transpose(1, 2)[:, 0::2]  # (B, H, T, hd)
    k1 = (x @ attn.k_proj.weight.T).view(B, T, 2 * H, hd).transpose(1, 2)[:, 0::2]  # (B, H, T, hd)
    v = (x @ attn.v_proj.weight.T).view(B, T, H, 2 * hd).transpose(1, 2)  # (B, H, T, 2hd)
    s = q1 @ k1.transpose(-2, -1) / math.sqrt(hd)  # (B, H, T, T)
    for b in range(B):
        idx = s[b].topk(min(int(k[b]), T), dim=-1).indices
        s[b] = torch.full_like(s[b], float("-inf")).scatter(-1, idx, s[b].gather(-1, idx))
    y = s.softmax(-1) @ v  # (B, H, T, 2hd)
    y = y / torch.sqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5) * attn.subln.weight
    ref = y.transpose(1, 2).reshape(B, T, D) @ attn.out_proj.weight.T
    torch.testing.assert_close(attn(x, k), ref, rtol=1e-5, atol=1e-5)


def test_lambda_init_schedule_and_repr() -> None:
    assert SparseDiffAttention(8, 2, layer_idx=0).lambda_init == pytest.approx(0.2)
    assert SparseDiffAttention(8, 2, layer_idx=3).lambda_init == pytest.approx(0.8 - 0.6 * math.exp(-0.9))
    assert "lambda_init" in repr(SparseDiffAttention(8, 2))
    plain = SparseDiffAttention(8, 2, differential=False)
    assert plain.head_dim == 4 and plain.lambda_full.item() == 0.0 and "differential=False" in repr(plain)


@pytest.mark.parametrize("differential", [True, False])
@pytest.mark.parametrize("use_k", [True, False])
def test_attention_permutation_equivariant(differential: bool, use_k: bool) -> None:
    torch.manual_seed(0)
    B, T, D = 2, 7, 16
    attn = SparseDiffAttention(D, 2, layer_idx=1, differential=differential).eval()
    x = torch.randn(B, T, D)
    k = torch.tensor([3, 5]) if use_k else None
    perm = torch.randperm(T)
    out = attn(x, k)
    assert out.shape == (B, T, D)
    torch.testing.assert_close(attn(x[:, perm], k), out[:, perm], rtol=1e-5, atol=1e-5)


def test_key_padding_mask_ignores_padded_tokens() -> None:
    torch.manual_seed(0)
    attn = SparseDiffAttention(16, 2).eval()
    x = torch.randn(2, 6, 16)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[0, 4:] = True
    k = torch.tensor([5, 3])  # row 0 keeps more keys than it has unpadded ones
    out = attn(x, k, key_padding_mask=pad)
    x2 = x.clone()
    x2[0, 4:] = 100 * torch.randn(2, 16)
    out2 = attn(x2, k, key_padding_mask=pad)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out2[~pad], out[~pad])


def test_gradients_reach_lambda_vectors() -> None:
    torch.manual_seed(0)
    attn = SparseDiffAttention(16, 2)
    x = torch.randn(2, 5, 16)
    (attn(x, torch.tensor([2, 3])) * torch.randn(2, 5, 16)).sum().backward()
    for p in (attn.lambda_q1, attn.lambda_k1, attn.lambda_q2, attn.lambda_k2):
        assert p.grad is not None and p.grad.abs().sum() > 0


# ---------------------------------------------------------------- TopKPredictor


@pytest.mark.parametrize("head", ["classification", "regression"])
def test_topk_predictor_shapes_and_smaller_k(head: str) -> None:
    torch.manual_seed(0)
    Fd, Kmax = 8, 12
    model = TopKPredictor(TopKConfig(Fd, k=Kmax, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32,
                                     head=head)).eval()
    for K in (Kmax, 5, 1):
        x, sims = _neighbours(3, K, Fd)
        y = model(x, sims)
        if head == "classification":
            assert y.shape == (3, K)
        else:
            assert y.shape == (3,) and ((y >= 0) & (y <= 1)).all()
        kp = model.predict_k(x, sims)
        assert kp.dtype == torch.long and kp.shape == (3,) and ((kp >= 1) & (kp <= K)).all()
    with pytest.raises(ValueError):
        model(*_neighbours(1, Kmax + 1, Fd))


def test_projected_inputs_give_the_same_outputs() -> None:
    """Inference computes the per-face part of the embedding once (``embed.project``) and passes the gathered rows;
    the outputs must be those of the plain path."""
    torch.manual_seed(0)
    Fd, K = 8, 12
    x, sims = _neighbours(4, K, Fd)
    k = torch.tensor([1, 4, 7, 12])
    topk = TopKPredictor(TopKConfig(Fd, k=K, d_model=16, num_layers=2, num_heads=2, dim_feedforward=32)).eval()
    torch.testing.assert_close(topk(x, sims, proj=topk.embed.project(x)), topk(x, sims))
    for window in (None, 6):
        sdt = SDT(SDTConfig(Fd, k=K, d_model=16, num_layers=2, num_heads=2, dim_feedforward=32, window=window)).eval()
        torch.testing.assert_close(sdt(x, sims, k, proj=sdt.embed.project(x)), sdt(x, sims, k))


def test_neighbour_embedding_is_its_formula() -> None:
    """e_j = W [sqrt(F) x_j, F x_j * x_0, s_j, s_j - s_{j+1}] + b + r_j, computed literally."""
    torch.manual_seed(0)
    emb = NeighbourEmbedding(8, 16, max_k=10)
    x, sims = _neighbours(2, 4, 8)
    gap = torch.cat([sims[:, :-1] - sims[:, 1:], torch.zeros(2, 1)], dim=1)
    inputs = torch.cat([x * math.sqrt(8), x * x[:, :1] * 8, sims[..., None], gap[..., None]], dim=-1)
    torch.testing.assert_close(emb(x, sims), emb.proj(inputs) + emb.rank_emb.weight[:4])


def test_relational_embedding_is_its_formula_and_pads_short_lists() -> None:
    """e_j = W [S_j0 .. S_j(K-1), 0 .. 0, s_j - s_{j+1}] + b + r_j with S = X X^T, computed literally; a list
    shorter than max_k is zero-padded."""
    torch.manual_seed(0)
    emb = NeighbourEmbedding(8, 16, max_k=10, relational=True)
    assert not emb.per_face and "relational=True" in repr(emb)
    for K in (10, 4):
        x, sims = _neighbours(2, K, 8)
        gap = torch.cat([sims[:, :-1] - sims[:, 1:], torch.zeros(2, 1)], dim=1)
        S = torch.einsum("bjf,blf->bjl", x, x)
        inputs = torch.cat([S, torch.zeros(2, K, 10 - K), gap[..., None]], dim=-1)
        torch.testing.assert_close(emb(x, sims), emb.proj(inputs) + emb.rank_emb.weight[:K])
    with pytest.raises(ValueError, match="more than max_k"):
        emb(*_neighbours(1, 11, 8))


@pytest.mark.parametrize("cls", ["topk", "sdt"])
def test_relational_networks_do_not_see_a_rotation_of_the_space(cls: str) -> None:
    """Relational tokens read only cosines: rotating every feature leaves the outputs as they are (feature tokens
    do not: that is how a network learns where its training identities lie)."""
    torch.manual_seed(0)
    Fd, K = 8, 12
    x, sims = _neighbours(3, K, Fd)
    rot = torch.linalg.qr(torch.randn(Fd, Fd))[0]
    k = torch.tensor([2, 5, 12])
    for relational in (True, False):
        kw = dict(k=K, d_model=16, num_layers=2, num_heads=2, dim_feedforward=32, relational=relational)
        net = (TopKPredictor(TopKConfig(Fd, **kw)) if cls == "topk" else SDT(SDTConfig(Fd, **kw))).eval()
        out = net(x, sims) if cls == "topk" else net(x, sims, k)
        out_rot = net(x @ rot, sims) if cls == "topk" else net(x @ rot, sims, k)
        if relational:
            torch.testing.assert_close(out_rot, out, atol=1e-5, rtol=1e-5)
        else:
            assert (out_rot - out).abs().max() > 1e-3


# ---------------------------------------------------------------- SDT


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"differential": False, "num_heads": 4}, {"use_topk_mask": False}, {"mask_margin": 3}],
)
def test_sdt_shapes_and_variants(kwargs: dict) -> None:
    torch.manual_seed(0)
    Fd, Kmax = 8, 12
    model = SDT(SDTConfig(Fd, k=Kmax, d_model=16, num_layers=2, dim_feedforward=32, **kwargs)).eval()
    for K in (Kmax, 4):
        x, sims = _neighbours(3, K, Fd)
        out = model(x, sims, torch.tensor([1, 3, K]))
        assert out.shape == (3, K) and torch.isfinite(out).all()
    assert len(model.lambdas) == 2


def test_sdt_overfits_toy_batch() -> None:
    """Neighbours of the centre's identity are noisy copies of it; the SDT must learn to separate them."""
    torch.manual_seed(0)
    B, K, Fd = 16, 10, 8
    centre = F.normalize(torch.randn(B, 1, Fd), dim=-1)
    n_same = torch.randint(1, K + 1, (B,))
    same = torch.arange(K)[None] < n_same[:, None]  # (B, K)
    x = torch.where(same[..., None], centre + 0.6 * torch.randn(B, K, Fd), torch.randn(B, K, Fd))
    x[:, 0] = centre[:, 0]
    x = F.normalize(x, dim=-1)
    sims = (x * x[:, :1]).sum(-1)
    order = sims.argsort(dim=1, descending=True, stable=True)
    x, sims = x.gather(1, order[..., None].expand_as(x)), sims.gather(1, order)
    labels = same.gather(1, order).float()
    k_pred = (n_same + torch.randint(-2, 3, (B,))).clamp(1, K)  # a noisy Top-K prediction
    model = SDT(SDTConfig(Fd, k=K, d_model=32, num_layers=2, num_heads=2, dim_feedforward=64, dropout=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = F.binary_cross_entropy_with_logits(model(x, sims, k_pred), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses


@pytest.mark.parametrize("kwargs", [{}, {"use_topk_mask": False}, {"differential": False, "num_heads": 4}])
def test_sdt_width_computes_the_same_first_logits(kwargs: dict) -> None:
    """``width=W``: the last block computes the first W tokens only; their logits are those of the full forward
    (every token still attends in the earlier blocks and as a key in the last)."""
    torch.manual_seed(0)
    Fd, K = 8, 12
    model = SDT(SDTConfig(Fd, k=K, d_model=16, num_layers=3, dim_feedforward=32, **kwargs)).eval()
    x, sims = _neighbours(5, K, Fd)
    k = torch.tensor([1, 3, 5, 8, 12])
    with torch.no_grad():
        full = model(x, sims, k)
        for width in (1, 4, K - 1):
            part = model(x, sims, k, width=width)
            assert part.shape == (5, width)
            torch.testing.assert_close(part, full[:, :width], rtol=1e-5, atol=1e-5)
        assert torch.equal(model(x, sims, k, width=K + 5), full)


def test_sdt_window_scores_only_the_first_neighbours() -> None:
    torch.manual_seed(0)
    cfg = SDTConfig(feat_dim=8, k=10, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32, dropout=0.0)
    full, win = SDT(cfg), SDT(dataclasses.replace(cfg, window=6))
    win.load_state_dict(full.state_dict())
    x = torch.nn.functional.normalize(torch.randn(3, 10, 8), dim=-1)
    sims = torch.sort(torch.rand(3, 10), dim=1, descending=True).values
    k = torch.tensor([2, 4, 9])
    out = win.eval()(x, sims, k)
    assert out.shape == (3, 6)
    # the window is the same network on the first 6 tokens
    torch.testing.assert_close(out, full.eval()(x[:, :6], sims[:, :6], k))


# ---------------------------------------------------------------- the differential maths, literally


def _lambda_init(layer_idx: int) -> float:
    return 0.8 - 0.6 * math.exp(-0.3 * layer_idx)  # METHOD.md section 1, step 6


def _keep_top(s: torch.Tensor, k: int | None) -> torch.Tensor:
    """Row-wise keep-mask of the k largest entries of ``s`` (T, T) by a stable descending sort (None: all)."""
    T = s.size(-1)
    if k is None:
        return torch.ones_like(s, dtype=torch.bool)
    order = torch.sort(-s, dim=-1, stable=True).indices
    return torch.zeros_like(s, dtype=torch.bool).scatter(-1, order[:, : min(max(k, 1), T)], True)


def _reference_attention(attn: SparseDiffAttention, x: torch.Tensor, k: torch.Tensor | None,
                         layer_idx: int) -> torch.Tensor:
    """Differential attention written out head by head and batch element by batch element, straight from METHOD.md
    and the Diff-Transformer reference: two masked softmaxes, lambda = exp(lq1.lk1) - exp(lq2.lk2) + lambda_init,
    per-head RMSNorm (eps 1e-5, learned weight), times (1 - lambda_init), then W_O."""
    B, T, D = x.shape
    H = attn.num_heads
    d = D // H // 2
    lam_init = _lambda_init(layer_idx)
    lam = (torch.exp((attn.lambda_q1 * attn.lambda_k1).sum()) - torch.exp((attn.lambda_q2 * attn.lambda_k2).sum())
           + lam_init)
    q = x @ attn.q_proj.weight.T  # (B, T, 2H d): sub-heads 2h, 2h+1 of width d
    kk = x @ attn.k_proj.weight.T
    v = x @ attn.v_proj.weight.T  # (B, T, H 2d)
    out = torch.empty(B, T, D, dtype=x.dtype)
    for b in range(B):
        kb = None if k is None else int(k[b])
        for h in range(H):
            maps = []
            for sub in (2 * h, 2 * h + 1):
                s = q[b, :, sub * d:(sub + 1) * d] @ kk[b, :, sub * d:(sub + 1) * d].T / math.sqrt(d)  # (T, T)
                s = s.masked_fill(~_keep_top(s, kb), float("-inf"))
                maps.append(torch.softmax(s, dim=-1))
            a = (maps[0] - lam * maps[1]) @ v[b, :, h * 2 * d:(h + 1) * 2 * d]  # (T, 2d)
            a = a / torch.sqrt(a.pow(2).mean(-1, keepdim=True) + 1e-5) * attn.subln.weight
            out[b, :, h * 2 * d:(h + 1) * 2 * d] = (1 - lam_init) * a
    return out @ attn.out_proj.weight.T


def _distinct_lambdas(attn: SparseDiffAttention, seed: int = 0) -> None:
    """Lambda vectors, and RMSNorm weights, far from their init so that every term of the maths shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        q1, q2, n1, n2 = (torch.randn(attn.head_dim, generator=g, dtype=torch.float64) for _ in range(4))
        attn.lambda_q1.copy_(0.5 * q1)
        attn.lambda_k1.copy_(0.5 * q1 + 0.1 * n1)  # lq1.lk1 > 0 ...
        attn.lambda_q2.copy_(0.3 * q2)
        attn.lambda_k2.copy_(-0.3 * q2 + 0.1 * n2)  # ... and lq2.lk2 < 0: lambda - lambda_init far from 0
        attn.subln.weight.copy_(torch.rand(attn.subln.weight.shape, generator=g) + 0.5)


@pytest.mark.parametrize("layer_idx", [0, 1, 3])
@pytest.mark.parametrize("masked", [True, False])
def test_differential_attention_is_its_formula(layer_idx: int, masked: bool) -> None:
    """The module equals the literal reference to 1e-6 (float64): kills a flipped sign of the lambda term, a dropped
    (1 - lambda_init) scale, a wrong lambda_init, the sub-head pairing and an off-by-one in the Top-k mask."""
    torch.manual_seed(layer_idx)
    B, T, D, H = 3, 9, 24, 3
    attn = SparseDiffAttention(D, H, layer_idx=layer_idx).double().eval()
    _distinct_lambdas(attn, layer_idx)
    x = torch.randn(B, T, D, dtype=torch.float64)
    k = torch.tensor([1, 4, 8]) if masked else None  # 8 < T: every row of element 2 is masked too
    ref = _reference_attention(attn, x, k, layer_idx)
    torch.testing.assert_close(attn(x, k), ref, rtol=1e-6, atol=1e-6)
    assert abs(attn.lambda_full.item() - _lambda_init(layer_idx)) > 0.1  # lambda's exp terms are not negligible


def test_lambda_is_the_reparameterisation() -> None:
    attn = SparseDiffAttention(16, 2, layer_idx=2)
    _distinct_lambdas(attn)
    q1, k1, q2, k2 = (p.detach() for p in (attn.lambda_q1, attn.lambda_k1, attn.lambda_q2, attn.lambda_k2))
    expected = math.exp(float(q1 @ k1)) - math.exp(float(q2 @ k2)) + _lambda_init(2)
    assert attn.lambda_full.item() == pytest.approx(expected, rel=1e-6)
    assert SparseDiffAttention(16, 2, layer_idx=2, lambda_init=0.5).lambda_init == 0.5  # an explicit override wins


def test_lambda_init_follows_the_depth_of_each_sdt_layer() -> None:
    sdt = SDT(SDTConfig(feat_dim=8, k=10, d_model=16, num_layers=5, num_heads=2, dim_feedforward=32))
    for layer, block in enumerate(sdt.blocks):
        assert block.attn.layer_idx == layer
        assert block.attn.lambda_init == pytest.approx(_lambda_init(layer), abs=1e-12)
    assert [round(_lambda_init(layer), 4) for layer in (0, 1, 2)] == [0.2, 0.3555, 0.4707]


def test_plain_attention_is_its_formula() -> None:
    """``differential=False``: softmax(M(Q K^T / sqrt(d))) V per head, no lambda, no RMSNorm, no scale."""
    torch.manual_seed(0)
    B, T, D, H = 2, 7, 16, 4
    attn = SparseDiffAttention(D, H, differential=False).double().eval()
    x = torch.randn(B, T, D, dtype=torch.float64)
    k = torch.tensor([2, 5])
    d = D // H
    q, kk, v = (x @ lin.weight.T for lin in (attn.q_proj, attn.k_proj, attn.v_proj))
    out = torch.empty(B, T, D, dtype=x.dtype)
    for b in range(B):
        for h in range(H):
            s = q[b, :, h * d:(h + 1) * d] @ kk[b, :, h * d:(h + 1) * d].T / math.sqrt(d)
            s = s.masked_fill(~_keep_top(s, int(k[b])), float("-inf"))
            out[b, :, h * d:(h + 1) * d] = torch.softmax(s, -1) @ v[b, :, h * d:(h + 1) * d]
    torch.testing.assert_close(attn(x, k), out @ attn.out_proj.weight.T, rtol=1e-6, atol=1e-6)


def _reference_sdt(model: SDT, x: torch.Tensor, sims: torch.Tensor, k_pred: torch.Tensor) -> torch.Tensor:
    """The SDT of its docstring, written out: tokens + E_in[j < k] + E_off[clip(j - k, -8, 8)], pre-norm blocks
    whose attention keeps clamp(k + margin, 1, K) keys per row, final LayerNorm, head on [h_j, h_0 * h_j]."""
    B, K, _ = x.shape
    rank = torch.arange(K).expand(B, K)
    kp = k_pred.view(B, 1)
    h = model.embed(x, sims) + model.inside_emb((rank < kp).long()) \
        + model.offset_emb((rank - kp).clamp(-8, 8) + 8)
    mask_k = (k_pred + model.mask_margin).clamp(1, K) if model.use_topk_mask else None
    for layer, block in enumerate(model.blocks):
        h = h + _reference_attention(block.attn, block.ln_1(h), mask_k, layer)
        h = h + block.mlp(block.ln_2(h))
    h = model.ln_f(h)
    return torch.cat([h, h[:, :1] * h], dim=-1) @ model.head.weight[0] + model.head.bias


@pytest.mark.parametrize("kwargs", [{}, {"mask_margin": 2}, {"mask_margin": -3}, {"use_topk_mask": False}])
def test_sdt_is_its_formula(kwargs: dict) -> None:
    torch.manual_seed(0)
    Fd, K = 8, 12
    model = SDT(SDTConfig(Fd, k=K, d_model=24, num_layers=2, num_heads=2, dim_feedforward=32, **kwargs)).double().eval()
    for layer, block in enumerate(model.blocks):
        _distinct_lambdas(block.attn, layer)
    x, sims = _neighbours(4, K, Fd)
    x, sims = x.double(), sims.double()
    k_pred = torch.tensor([1, 3, 10, 12])  # offsets clipped on both sides; margins clamped at 1 and K
    torch.testing.assert_close(model(x, sims, k_pred), _reference_sdt(model, x, sims, k_pred), rtol=1e-6, atol=1e-6)


def _reference_scores_attention(attn: SparseDiffAttention, x: torch.Tensor, k: torch.Tensor | None,
                                pad: torch.Tensor | None) -> torch.Tensor:
    """The forward before the SDPA path and the per-forward Top-k plan: every score written out, masked with
    :func:`topk_mask` (padded keys ranked last, then dropped), one softmax per map, combined maps times V."""
    B, T, D = x.shape
    H, hd = attn.num_heads, attn.head_dim
    S = 2 * H if attn.differential else H
    q = attn.q_proj(x).view(B, T, S, hd).transpose(1, 2)
    kk = attn.k_proj(x).view(B, T, S, hd).transpose(1, 2)
    v = attn.v_proj(x).view(B, T, H, D // H).transpose(1, 2)
    scores = (q * attn.scaling) @ kk.transpose(-2, -1)
    keep = torch.ones_like(scores, dtype=torch.bool)
    if pad is not None:
        scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
        keep = ~pad[:, None, None, :].expand_as(scores)
    keep = keep & topk_mask(scores, k)
    w = F.softmax(scores.masked_fill(~keep, torch.finfo(scores.dtype).min), dim=-1)
    if attn.differential:
        w = w.view(B, H, 2, T, T)
        w = w[:, :, 0] - attn.lambda_full * w[:, :, 1]
    y = w @ v
    if attn.differential:
        y = attn.subln(y) * (1.0 - attn.lambda_init)
    return attn.out_proj(y.transpose(1, 2).reshape(B, T, D))


@pytest.mark.parametrize("sdpa", [False, True, None])
@pytest.mark.parametrize("k", [None, torch.tensor([2, 5, 9])])
def test_attention_dropout_acts_in_training_on_every_path(sdpa: bool | None, k) -> None:
    """Training with dropout drops attention weights whatever path eval would take (dense or masked, SDPA or
    not): two training forwards differ; eval and a dropout of 0 are deterministic and equal."""
    torch.manual_seed(0)
    attn = SparseDiffAttention(16, 2, layer_idx=1, dropout=0.5)
    attn.sdpa = sdpa
    x = torch.randn(3, 9, 16)
    with torch.no_grad():
        a, b = attn(x, k), attn(x, k)
        assert not torch.allclose(a, b)
        attn.eval()
        torch.testing.assert_close(attn(x, k), attn(x, k), rtol=0, atol=0)
        plain = attn(x, k)
        attn.train()
        attn.attn_drop.p = 0.0
        torch.testing.assert_close(attn(x, k), plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("differential", [True, False])
@pytest.mark.parametrize("sdpa", [False, True, None])
def test_both_attention_paths_equal_the_written_out_scores(differential: bool, sdpa: bool | None) -> None:
    """The scores path and the ``F.scaled_dot_product_attention`` path give the written-out forward to 1e-5 on
    random inputs: dense, Top-k with sorted and unsorted k (grouped per k, and the many-k path), ties (repeated
    tokens), and padding (a row keeping more keys than it has)."""
    g = torch.Generator().manual_seed(0)
    B, T, D = 12, 10, 16
    attn = SparseDiffAttention(D, 2, layer_idx=2, differential=differential).eval()
    if differential:
        _distinct_lambdas(attn)
    attn.sdpa = sdpa
    x = torch.randn(B, T, D, generator=g)
    x[:4, 5:] = x[:4, :1]  # tokens equal to the first: tied scores at the k-th rank
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[1, 7:] = pad[6, 3:] = True
    for k in (None, torch.full((B,), 4), torch.sort(torch.randint(1, 12, (B,), generator=g)).values,
              torch.randint(1, 12, (B,), generator=g), torch.arange(B) % (T + 1)):
        for p in (None, pad):
            with torch.no_grad():
                torch.testing.assert_close(attn(x, k, key_padding_mask=p), _reference_scores_attention(attn, x, k, p),
                                           rtol=1e-5, atol=1e-5)


def test_topk_plan_groups_and_dense() -> None:
    """One plan per forward: dense when every k covers the row; groups per distinct k (slices for a k-sorted batch,
    index rows otherwise); no groups past ``max_groups`` distinct k."""
    T = 6
    assert TopkPlan(None, 3, T).dense and TopkPlan(torch.tensor([6, 9, 7]), 3, T).dense
    plan = TopkPlan(torch.tensor([0, 2, 2, 5]), 4, T)  # 0 is clamped to 1
    assert not plan.dense and plan.kmax == 5 and torch.equal(plan.k, torch.tensor([1, 2, 2, 5]))
    assert plan.groups == [(1, slice(0, 1)), (2, slice(1, 3)), (5, slice(3, 4))]
    rows = TopkPlan(torch.tensor([3, 1, 3]), 3, T).groups
    assert [v for v, _ in rows] == [1, 3] and torch.equal(rows[1][1], torch.tensor([0, 2]))
    assert TopkPlan(torch.arange(1, 7), 6, T, max_groups=4).groups is None
    assert TopkPlan(torch.tensor(2), 3, T).k.shape == (3,)
    scores = torch.randn(4, 2, T, T)
    assert torch.equal(topk_mask(scores, plan), topk_mask(scores, torch.tensor([0, 2, 2, 5])))
    with pytest.raises(ValueError):
        TopkPlan(torch.tensor([1, 2]), 3, T)


# ---------------------------------------------------------------- what the mutation run found unpinned

_TOPK_KWARGS = dict(feat_dim=8, k=12, d_model=16, num_layers=1, num_heads=2, dim_feedforward=24, dropout=0.2,
                    head="regression", relational=True, feature_rank=0)
_SDT_KWARGS = dict(feat_dim=8, k=12, d_model=24, num_layers=3, num_heads=3, dim_feedforward=20, dropout=0.3,
                   differential=True, use_topk_mask=False, mask_margin=2, window=10, relational=True, feature_rank=3)


@pytest.mark.parametrize("cls, kwargs", [(TopKPredictor, _TOPK_KWARGS), (SDT, _SDT_KWARGS)])
def test_networks_rebuild_from_their_config(cls: type, kwargs: dict) -> None:
    """The model file stores ``asdict(config)`` and rebuilds with ``cls(cls.config_class(**config))``: it must be
    every field as given, and the rebuilt network must load the state dict and give the same outputs."""
    torch.manual_seed(0)
    model = cls(cls.config_class(**kwargs)).eval()
    assert type(model.config) is cls.config_class and dataclasses.asdict(model.config) == kwargs
    twin = cls(cls.config_class(**dataclasses.asdict(model.config))).eval()
    twin.load_state_dict(model.state_dict())
    x, sims = _neighbours(3, 12, 8)
    args = (x, sims) if cls is TopKPredictor else (x, sims, torch.tensor([2, 5, 12]))
    out = model(*args)
    assert out.shape == ((3, 10) if cls is SDT else (3,))  # the SDT's window (10) is shorter than K, longer than F
    torch.testing.assert_close(twin(*args), out)


@pytest.mark.parametrize("cls", [TopKPredictor, SDT])
def test_networks_score_each_centre_on_its_own(cls: type) -> None:
    """A centre's outputs do not depend on the other centres of its batch (attention runs over its K neighbours,
    never across the batch)."""
    torch.manual_seed(0)
    model = cls(cls.config_class(8, k=10, d_model=16, num_layers=2, num_heads=2, dim_feedforward=32)).eval()
    x, sims = _neighbours(4, 10, 8)
    k = torch.tensor([1, 3, 6, 10])
    run = (lambda i: model(x[i], sims[i])) if cls is TopKPredictor else (lambda i: model(x[i], sims[i], k[i]))
    whole = run(slice(None))
    for i in range(4):
        torch.testing.assert_close(run(slice(i, i + 1)), whole[i:i + 1], rtol=1e-5, atol=1e-5)


def test_bad_arguments_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="TopKConfig.head must be one of 'classification', 'regression', got 'ord"):
        TopKPredictor(TopKConfig(8, head="ordinal"))
    with pytest.raises(ValueError, match="must be divisible by 8"):
        SparseDiffAttention(12, 4)
    with pytest.raises(ValueError, match="must be divisible by 4"):
        SparseDiffAttention(10, 4, differential=False)
    with pytest.raises(ValueError, match="more than max_k=10"):
        NeighbourEmbedding(8, 16, max_k=10)(*_neighbours(1, 11, 8))


# ---------------------------------------------------------------- the dataclass configs

BAD_CONFIGS = [
    (TopKConfig, {"feat_dim": 0}, "TopKConfig.feat_dim must be a positive integer, got 0"),
    (TopKConfig, {"k": 2.5}, "TopKConfig.k must be a positive integer, got 2.5"),
    (TopKConfig, {"num_layers": True}, "TopKConfig.num_layers must be a positive integer, got True"),
    (TopKConfig, {"num_heads": 0}, "TopKConfig.num_heads must be a positive integer, got 0"),
    (TopKConfig, {"d_model": 30, "num_heads": 4}, "TopKConfig.d_model=30 must be divisible by 4 (num_heads)"),
    (TopKConfig, {"dim_feedforward": -1}, "TopKConfig.dim_feedforward must be a positive integer, got -1"),
    (TopKConfig, {"dropout": 1.0}, "TopKConfig.dropout must be a number in [0, 1), got 1.0"),
    (TopKConfig, {"dropout": -0.1}, "TopKConfig.dropout must be a number in [0, 1), got -0.1"),
    (TopKConfig, {"dropout": float("nan")}, "TopKConfig.dropout must be a number in [0, 1), got nan"),
    (SDTConfig, {"d_model": 20, "num_heads": 4}, "SDTConfig.d_model=20 must be divisible by 8 (2 * num_heads)"),
    (SDTConfig, {"d_model": 6, "num_heads": 4, "differential": False},
     "SDTConfig.d_model=6 must be divisible by 4 (num_heads)"),
    (SDTConfig, {"differential": 1}, "SDTConfig.differential must be true or false, got 1"),
    (SDTConfig, {"use_topk_mask": "no"}, "SDTConfig.use_topk_mask must be true or false, got 'no'"),
    (SDTConfig, {"mask_margin": 1.5}, "SDTConfig.mask_margin must be an integer, got 1.5"),
    (SDTConfig, {"window": 0}, "SDTConfig.window must be a positive integer, got 0"),
    (SDTConfig, {"num_layers": 0}, "SDTConfig.num_layers must be a positive integer, got 0"),
    (LGCNConfig, {"hidden": 0}, "LGCNConfig.hidden must be a positive integer, got 0"),
    (LGCNConfig, {"pivot_u": 0}, "LGCNConfig.pivot_u must be a positive integer, got 0"),
    (LGCNConfig, {"pivot_sims": 1}, "LGCNConfig.pivot_sims must be true or false, got 1"),
    (LGCNConfig, {"dropout": 1.5}, "LGCNConfig.dropout must be a number in [0, 1), got 1.5"),
    (PivotGATConfig, {"heads": 0}, "PivotGATConfig.heads must be a positive integer, got 0"),
    (PivotGATConfig, {"hidden": 64, "heads": 6}, "PivotGATConfig.hidden=64 must be divisible by 6 (heads)"),
    (PivotGATConfig, {"num_layers": 0}, "PivotGATConfig.num_layers must be a positive integer, got 0"),  # LGCN's
]


@pytest.mark.parametrize("config_class, values, message", BAD_CONFIGS,
                         ids=[f"{c.__name__}-{'-'.join(v)}" for c, v, _ in BAD_CONFIGS])
def test_configs_refuse_bad_values_naming_the_field(config_class: type, values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        config_class(**{"feat_dim": 8, **values})


def test_configs_defaults_and_edges() -> None:
    """Today's defaults; the edges of each range are accepted; a config cannot change under its network."""
    assert dataclasses.asdict(TopKConfig(8)) == dict(feat_dim=8, k=80, d_model=128, num_layers=2, num_heads=4,
                                                     dim_feedforward=256, dropout=0.1, head="classification", relational=False,
                                                     feature_rank=0)
    assert dataclasses.asdict(SDTConfig(8)) == dict(feat_dim=8, k=80, d_model=128, num_layers=2, num_heads=2,
                                                    dim_feedforward=256, dropout=0.1, differential=True,
                                                    use_topk_mask=True, mask_margin=0, window=None, relational=False,
                                                    feature_rank=0)
    assert dataclasses.asdict(LGCNConfig(8)) == dict(feat_dim=8, k=80, hidden=64, num_layers=4, pivot_u=10,
                                                     dropout=0.0, pivot_sims=False)
    # PivotGAT's: LGCN's fields in the same order, two layers by default, and its heads
    assert dataclasses.asdict(PivotGATConfig(8)) == {**dataclasses.asdict(LGCNConfig(8)), "num_layers": 2, "heads": 4}
    assert list(dataclasses.asdict(PivotGATConfig(8)))[-1] == "heads"
    SDTConfig(8, d_model=12, num_heads=3, differential=False, dropout=0, mask_margin=-1, window=1)
    TopKConfig(1, k=1, d_model=1, num_layers=1, num_heads=1, dim_feedforward=1, dropout=0.999, head="regression")
    PivotGATConfig(8, hidden=6, heads=3)
    cfg = SDTConfig(8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.window = 4  # dataclasses.replace(cfg, window=4) makes a new one


@pytest.mark.parametrize("cls, config", [
    (TopKPredictor, {"feat_dim": 8}), (SDT, TopKConfig(8)), (LGCN, PivotGATConfig(8)), (PivotGAT, LGCNConfig(8)),
])
def test_networks_take_exactly_their_config(cls: type, config) -> None:
    """A network is built from its own dataclass, not a dict or another network's (an LGCN given a PivotGATConfig
    would record a ``heads`` it does not have)."""
    with pytest.raises(TypeError, match=f"^{cls.__name__} takes one {cls.config_class.__name__} "):
        cls(config)
    with pytest.raises(TypeError):
        cls(feat_dim=8)  # the keyword-argument form is gone


def test_config_from_dict_checks_the_fields() -> None:
    """What a model file or an old checkpoint holds: unknown and missing fields are named; fields with defaults may
    be absent (a file written before the field existed)."""
    assert config_from_dict(SDTConfig, {"feat_dim": 8, "k": 10}) == SDTConfig(8, k=10)
    with pytest.raises(ValueError, match=r"^unknown SDTConfig field\(s\) 'heads', 'zz'$"):
        config_from_dict(SDTConfig, {"feat_dim": 8, "zz": 1, "heads": 2})
    with pytest.raises(ValueError, match=r"^LGCNConfig field\(s\) 'feat_dim' missing$"):
        config_from_dict(LGCNConfig, {"k": 10})
    with pytest.raises(ValueError, match="^TopKConfig must be a dict of fields, got list$"):
        config_from_dict(TopKConfig, [8])
    with pytest.raises(ValueError, match=r"^TopKConfig.k must be a positive integer, got '80'$"):
        config_from_dict(TopKConfig, {"feat_dim": 8, "k": "80"})
