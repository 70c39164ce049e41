"""Tiny CPU tests of the networks in ``models/``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models import SDT, NeighbourEmbedding, SparseDiffAttention, TopKPredictor, topk_mask


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
    model = TopKPredictor(Fd, k=Kmax, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32, head=head).eval()
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
    topk = TopKPredictor(Fd, k=K, d_model=16, num_layers=2, num_heads=2, dim_feedforward=32).eval()
    torch.testing.assert_close(topk(x, sims, proj=topk.embed.project(x)), topk(x, sims))
    for window in (None, 6):
        sdt = SDT(Fd, k=K, d_model=16, num_layers=2, num_heads=2, dim_feedforward=32, window=window).eval()
        torch.testing.assert_close(sdt(x, sims, k, proj=sdt.embed.project(x)), sdt(x, sims, k))


def test_neighbour_embedding_is_its_formula() -> None:
    """e_j = W [sqrt(F) x_j, F x_j * x_0, s_j, s_j - s_{j+1}] + b + r_j, computed literally."""
    torch.manual_seed(0)
    emb = NeighbourEmbedding(8, 16, max_k=10)
    x, sims = _neighbours(2, 4, 8)
    gap = torch.cat([sims[:, :-1] - sims[:, 1:], torch.zeros(2, 1)], dim=1)
    inputs = torch.cat([x * math.sqrt(8), x * x[:, :1] * 8, sims[..., None], gap[..., None]], dim=-1)
    torch.testing.assert_close(emb(x, sims), emb.proj(inputs) + emb.rank_emb.weight[:4])


# ---------------------------------------------------------------- SDT


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"differential": False, "num_heads": 4}, {"use_topk_mask": False}, {"mask_margin": 3}],
)
def test_sdt_shapes_and_variants(kwargs: dict) -> None:
    torch.manual_seed(0)
    Fd, Kmax = 8, 12
    model = SDT(Fd, k=Kmax, d_model=16, num_layers=2, dim_feedforward=32, **kwargs).eval()
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
    model = SDT(Fd, k=K, d_model=32, num_layers=2, num_heads=2, dim_feedforward=64, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = F.binary_cross_entropy_with_logits(model(x, sims, k_pred), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses


def test_sdt_window_scores_only_the_first_neighbours() -> None:
    torch.manual_seed(0)
    full = SDT(feat_dim=8, k=10, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32, dropout=0.0)
    win = SDT(feat_dim=8, k=10, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32, dropout=0.0, window=6)
    win.load_state_dict(full.state_dict())
    x = torch.nn.functional.normalize(torch.randn(3, 10, 8), dim=-1)
    sims = torch.sort(torch.rand(3, 10), dim=1, descending=True).values
    k = torch.tensor([2, 4, 9])
    out = win.eval()(x, sims, k)
    assert out.shape == (3, 6)
    # the window is the same network on the first 6 tokens
    torch.testing.assert_close(out, full.eval()(x[:, :6], sims[:, :6], k))
