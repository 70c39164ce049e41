"""Sparse differential attention (METHOD.md section 1, step 6).

Follows the Diff-Transformer reference (microsoft/unilm ``Diff-Transformer/multihead_diffattn.py``) for the maths
and the lambda re-parameterisation, without rotary embeddings or causal masking (neighbours are a set ordered by
similarity; rank information enters through the token embedding), and adds the row-wise Top-k score mask.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def lambda_init_fn(layer_idx: int) -> float:
    """Diff-Transformer's depth schedule ``lambda_init = 0.8 - 0.6 exp(-0.3 l)`` for 0-based layer index ``l``."""
    return 0.8 - 0.6 * math.exp(-0.3 * layer_idx)


class TopkPlan:
    """How :func:`topk_mask` splits a batch by its k: computed once per forward (the only host syncs of the Top-k
    mask besides a tie check) and reused by every layer and every score map.

    Args:
        k (Tensor | None): (B,) integer keys to keep per row for batch element b (or 0-d for the whole batch);
            values < 1 are clamped to 1, values > T keep the whole row. None keeps everything.
        B (int): batch size. T (int): keys per row.
        max_groups (int, default 8): more distinct k than this take one sorted partial ``topk`` up to the largest
            k + 1 and gather (random training batches) instead of one partial ``topk`` per distinct k (the k-sorted
            batches of inference).

    Attributes: ``k`` (B,) long in 1..T or None; ``dense`` True when every row keeps all T keys (no mask);
    ``groups`` [(k value, rows)] per distinct k < T (rows a slice when the batch is k-sorted), or None when there
    are more than ``max_groups`` distinct k; ``kmax`` the largest k.
    """

    def __init__(self, k: Tensor | None, B: int, T: int, max_groups: int = 8) -> None:
        self.k: Tensor | None = None
        self.groups: list[tuple[int, slice | Tensor]] | None = None
        self.kmax = T
        if k is None:
            self.dense = True
            return
        k = k.to(dtype=torch.long).clamp(1, T)
        if k.dim() == 0:
            k = k.expand(B)
        if k.shape != (B,):
            raise ValueError(f"k must have shape ({B},) or be 0-d, got {tuple(k.shape)}")
        ks = torch.unique(k).tolist()  # sorted distinct k: one host sync
        self.dense = ks[0] >= T  # every row keeps all T keys: no mask to compute
        self.k, self.kmax = k, ks[-1]
        if self.dense or len(ks) > max_groups:
            return
        if len(ks) == 1:
            self.groups = [(ks[0], slice(None))]
        elif bool((k[1:] >= k[:-1]).all()):  # k-sorted batch: each group is a slice (a view, no copy)
            counts = torch.unique_consecutive(k, return_counts=True)[1].tolist()
            ends = list(itertools.accumulate(counts))
            self.groups = [(v, slice(e - c, e)) for v, c, e in zip(ks, counts, ends)]
        else:
            self.groups = [(v, (k == v).nonzero().squeeze(1)) for v in ks]


def topk_mask(scores: Tensor, k: Tensor | TopkPlan | None) -> Tensor:
    r"""Row-wise Top-k keep-mask of an attention score tensor.

    For every row ``scores[b, ..., i, :]`` (length T) the mask is True at exactly ``min(max(k_b, 1), T)`` entries:
    those with the largest scores. Ties are broken deterministically by key index (lower index kept first); NaN
    scores rank last. The k-th largest score of each row comes from a partial ``topk`` (see :func:`_kth_scores`;
    callers batch rows of equal or similar k, as :func:`clustering.inference.predict_pairs` does, to make it cheap).
    Ties at the k-th score are resolved only when a row has one (a cumulative count over the row).

    Args:
        scores (Tensor): (B, ..., T, T) scores (any float dtype); only the last dim is ranked.
        k (Tensor | TopkPlan | None): (B,) integer number of keys to keep per row for batch element b (a 0-d tensor
            applies to the whole batch), or a :class:`TopkPlan` of it. Values < 1 are clamped to 1, values > T keep
            the whole row. ``None`` keeps everything.

    Returns:
        Tensor: bool keep-mask with the shape of ``scores``.
    """
    plan = k if isinstance(k, TopkPlan) else TopkPlan(k, scores.size(0), scores.size(-1))
    if plan.dense:
        return torch.ones_like(scores, dtype=torch.bool)
    key = scores.detach()
    if torch.isnan(key).any():
        key = key.nan_to_num(nan=float("-inf"))
    kth, keep = _topk_rule(key, plan)
    return key >= kth if keep is None else keep


def _topk_rule(key: Tensor, plan: TopkPlan) -> tuple[Tensor | None, Tensor | None]:
    """How to keep the top k of every row of ``key`` (B, ..., T), no NaN: ``(kth, None)`` with kth (B, ..., T, 1)
    the k-th largest score when no row has a tie there (the usual case: keep ``key >= kth``), else ``(None, keep)``
    with the bool keep-mask that keeps the lowest key indices among the tied until each row holds exactly k."""
    B, T = key.size(0), key.size(-1)
    kth, nxt = _kth_scores(key, plan)  # (B, ..., T, 1) each: the k-th and (k+1)-th largest score of every row
    k = plan.k.to(key.device).view(B, *([1] * (key.dim() - 1)))  # (B, 1, ..., 1)
    if not bool(((nxt == kth) & (k < T)).any()):  # the one host sync per call
        return kth, None
    above = key > kth
    tied = key == kth
    room = k - above.sum(-1, keepdim=True)  # (B, ..., T, 1)
    return None, above | (tied & (tied.cumsum(-1) <= room))


def _kth_scores(key: Tensor, plan: TopkPlan) -> tuple[Tensor, Tensor]:
    """The k-th and (k+1)-th largest entry of every row of ``key`` (B, ..., T) for the plan's k in 1..T, each
    (B, ..., 1); rows with k = T get -inf for both (they keep everything).

    Per group of equal k (the k-sorted batches of inference), an unsorted partial ``topk`` of k + 1 entries -- of
    the T - k + 1 smallest instead when that is shorter -- whose two extreme entries are both values. Without groups
    (random training batches), one sorted partial ``topk`` up to the batch's largest k + 1, and a gather."""
    T = key.size(-1)
    if plan.groups is None:
        m = min(plan.kmax + 1, T)
        top = torch.topk(key, m, dim=-1, sorted=True).values  # (B, ..., T, m), descending
        idx = plan.k.to(key.device).view(-1, *([1] * (key.dim() - 1))).expand(*key.shape[:-1], 1)  # (B, ..., T, 1)
        kth = top.gather(-1, idx - 1)
        nxt = top.gather(-1, idx.clamp(max=m - 1))
        full = idx == T
        return kth.masked_fill(full, float("-inf")), nxt.masked_fill(full, float("-inf"))
    kth = key.new_full((*key.shape[:-1], 1), float("-inf"))
    nxt = kth.clone()
    for kv, rows in plan.groups:
        if kv >= T:
            continue
        sub = key[rows]
        if kv + 1 <= T - kv + 1:  # the k + 1 largest: the smallest two of them are the (k+1)-th and k-th
            two = torch.topk(torch.topk(sub, kv + 1, dim=-1, sorted=False).values, 2, dim=-1, largest=False).values
            kth[rows], nxt[rows] = two[..., 1:], two[..., :1]
        else:  # the T - k + 1 smallest: their largest two are the k-th and (k+1)-th largest of the row
            low = torch.topk(sub, T - kv + 1, dim=-1, largest=False, sorted=False).values
            two = torch.topk(low, 2, dim=-1, largest=True).values
            kth[rows], nxt[rows] = two[..., :1], two[..., 1:]
    return kth, nxt


class SparseDiffAttention(nn.Module):
    r"""Multi-head sparse differential self-attention.

    With ``H = num_heads`` and ``d = embed_dim // num_heads // 2`` (sub-head width), each head h has
    :math:`[Q_1, Q_2] = x W_Q`, :math:`[K_1, K_2] = x W_K` (2H sub-heads of width d, head h uses sub-heads 2h and
    2h+1 as in the reference) and :math:`V = x W_V` (H heads of width 2d):

    .. math::
        A_h = \big(\mathrm{softmax}(M(Q_1 K_1^\top / \sqrt{d})) - \lambda\,
              \mathrm{softmax}(M(Q_2 K_2^\top / \sqrt{d}))\big) V_h

    .. math::
        \lambda = e^{\lambda_{q1}\cdot\lambda_{k1}} - e^{\lambda_{q2}\cdot\lambda_{k2}} + \lambda_{init},\quad
        \lambda_{init} = 0.8 - 0.6\,e^{-0.3\,l}

    out = W_O concat_h[(1 - lambda_init) RMSNorm(A_h)], with one RMSNorm (width 2d, eps 1e-5, learnable weight)
    shared by all heads. ``M`` is :func:`topk_mask` applied separately to each of the two score maps of every head:
    in each query row only the ``k_b`` largest scores survive, the rest are masked (to the dtype's most negative
    finite value, which equals -inf after the softmax but gives a uniform rather than NaN row if every key of a row
    is padded). ``lambda`` is shared by the heads of a layer (one scalar), as in the reference.

    With ``differential=False`` the module is plain sparse multi-head softmax attention
    (H heads of width ``embed_dim // num_heads``, no lambda, no RMSNorm): ``A_h = softmax(M(Q K^T / sqrt(d))) V``.
    For a like-for-like ablation, give the plain variant twice the heads of the differential one.

    Args:
        embed_dim (int): model width D; must be divisible by ``2 * num_heads`` (``num_heads`` if plain).
        num_heads (int): number of (differential) heads H.
        layer_idx (int, default 0): 0-based layer index l, sets ``lambda_init``.
        dropout (float, default 0.0): dropout on the (combined) attention weights.
        differential (bool, default True): differential attention; False for plain softmax attention.
        lambda_init (float | None, default None): overrides the depth schedule when given.

    Shapes:
        x (B, T, D), k (B,) long or None, key_padding_mask (B, T) bool (True = padded, never attended) or None
        -> (B, T, D). Projections have no bias, as in the reference.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        layer_idx: int = 0,
        dropout: float = 0.0,
        differential: bool = True,
        lambda_init: float | None = None,
    ) -> None:
        super().__init__()
        split = 2 * num_heads if differential else num_heads
        if embed_dim % split != 0:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by {split} (num_heads={num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.layer_idx = layer_idx
        self.differential = differential
        self.head_dim = embed_dim // split  # width of one Q/K (sub-)head
        self.scaling = self.head_dim**-0.5
        if not differential:
            self.lambda_init = 0.0
        else:
            self.lambda_init = lambda_init_fn(layer_idx) if lambda_init is None else float(lambda_init)
        inner = split * self.head_dim  # == embed_dim
        self.q_proj = nn.Linear(embed_dim, inner, bias=False)
        self.k_proj = nn.Linear(embed_dim, inner, bias=False)
        self.v_proj = nn.Linear(embed_dim, inner, bias=False)
        self.out_proj = nn.Linear(inner, embed_dim, bias=False)
        self.attn_drop = nn.Dropout(dropout)
        # None: F.scaled_dot_product_attention on CUDA and for dense attention on a CPU, else the scores written out
        self.sdpa: bool | None = None
        if differential:
            self.lambda_q1 = nn.Parameter(torch.empty(self.head_dim))
            self.lambda_k1 = nn.Parameter(torch.empty(self.head_dim))
            self.lambda_q2 = nn.Parameter(torch.empty(self.head_dim))
            self.lambda_k2 = nn.Parameter(torch.empty(self.head_dim))
            self.subln = nn.RMSNorm(2 * self.head_dim, eps=1e-5, elementwise_affine=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default ``nn.Linear`` init for the projections, N(0, 0.1) for the lambda vectors, unit RMSNorm weight."""
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            lin.reset_parameters()
        if self.differential:
            for p in (self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2):
                nn.init.normal_(p, mean=0.0, std=0.1)
            self.subln.reset_parameters()

    @property
    def lambda_full(self) -> Tensor:
        """Current lambda, a 0-d tensor (0 for plain attention, where the second map is absent)."""
        if not self.differential:
            return self.out_proj.weight.new_zeros(())
        acc = torch.promote_types(self.lambda_q1.dtype, torch.float32)  # float32 at least (half-precision weights)
        lambda_1 = torch.exp(torch.sum(self.lambda_q1 * self.lambda_k1, dtype=acc))
        lambda_2 = torch.exp(torch.sum(self.lambda_q2 * self.lambda_k2, dtype=acc))
        return lambda_1 - lambda_2 + self.lambda_init

    def forward(self, x: Tensor, k: Tensor | TopkPlan | None = None, key_padding_mask: Tensor | None = None,
                queries: int | None = None) -> Tensor:
        """Args: x (B, T, D); k (B,) long Top-k per batch element, its :class:`TopkPlan` (built once per forward by
        :class:`models.SDT` for all its layers), or None (dense); key_padding_mask (B, T) bool, True = padded key,
        or None; queries: only the first ``Q = queries`` tokens query (every token is a key), None for all T.
        Returns (B, Q, D).

        Two exact implementations of the same maths: ``F.scaled_dot_product_attention`` (on CUDA, and for dense
        attention on a CPU, where its fused kernel is 1.6x faster than the scores written out: measured at 256 x 80
        tokens, d 64) or the scores written out (the Top-k mask on a CPU, where the mask needs the scores anyway and
        the fused kernel gains nothing, and training with dropout, which drops the combined map). Set ``self.sdpa``
        to force either. A row whose keys are all padded averages them uniformly on the scores path, and gives 0 on
        the other."""
        B, T, D = x.shape
        H, hd = self.num_heads, self.head_dim
        S = 2 * H if self.differential else H  # number of score maps
        xq = x if queries is None or queries >= T else x[:, :queries]  # (B, Q, D)
        Q = xq.size(1)
        q = self.q_proj(xq).view(B, Q, S, hd).transpose(1, 2)  # (B, S, Q, hd)
        kk = self.k_proj(x).view(B, T, S, hd).transpose(1, 2)  # (B, S, T, hd)
        v = self.v_proj(x).view(B, T, H, D // H).transpose(1, 2)  # (B, H, T, 2hd | hd)
        plan = k if isinstance(k, TopkPlan) else TopkPlan(k, B, T)
        pad = None if key_padding_mask is None else key_padding_mask.to(torch.bool)[:, None, None, :]  # (B,1,1,T)
        lam = self.lambda_full.to(x.dtype) if self.differential else None
        sdpa = (x.is_cuda or plan.dense) if self.sdpa is None else self.sdpa
        if (sdpa and plan.dense) and not (self.training and self.attn_drop.p > 0):
            y = self._attend_sdpa(q, kk, v, lam, None if pad is None else ~pad)
        else:
            scores = (q * self.scaling) @ kk.transpose(-2, -1)  # (B, S, Q, T)
            drop = self._dropped(scores, plan, pad)  # (B, S, Q, T) bool, (B, 1, 1, T) or None
            if sdpa and not (self.training and self.attn_drop.p > 0):
                y = self._attend_sdpa(q, kk, v, lam, None if drop is None else ~drop)
            else:
                y = self._attend_scores(scores, drop, v, lam)
        if self.differential:
            y = self.subln(y) * (1.0 - self.lambda_init)
        y = y.transpose(1, 2).reshape(B, Q, D)  # (B, Q, D)
        return self.out_proj(y)

    @staticmethod
    def _dropped(scores: Tensor, plan: TopkPlan, pad: Tensor | None) -> Tensor | None:
        """Bool (B, S, T, T) (or broadcastable) mask of the scores that :func:`topk_mask` drops, padded keys
        included (they rank last); None when nothing is dropped. Padded scores of ``scores`` become -inf."""
        if pad is not None:
            scores.masked_fill_(pad, float("-inf"))  # padded keys rank last in the Top-k
        if plan.dense:
            return pad
        kth, keep = _topk_rule(scores.detach(), plan)
        drop = scores < kth if keep is None else ~keep
        return drop if pad is None else drop | pad

    def _attend_scores(self, scores: Tensor, drop: Tensor | None, v: Tensor, lam: Tensor | None) -> Tensor:
        """Dropped scores to the dtype's most negative finite value (-inf after the softmax, a uniform rather than
        NaN row if every key of a row is padded), softmax, lambda-combined maps, dropout, times V: (B, H, T, .)."""
        B, S, Q, T = scores.shape
        if drop is not None:
            scores = scores.masked_fill(drop, torch.finfo(scores.dtype).min)
        attn = F.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores)  # (B, S, Q, T)
        if lam is not None:
            attn = attn.view(B, S // 2, 2, Q, T)  # (B, H, 2, Q, T)
            attn = attn[:, :, 0] - lam * attn[:, :, 1]  # (B, H, Q, T)
        return self.attn_drop(attn) @ v  # (B, H, Q, 2hd | hd)

    def _attend_sdpa(self, q: Tensor, kk: Tensor, v: Tensor, lam: Tensor | None, allowed: Tensor | None) -> Tensor:
        """The same through ``F.scaled_dot_product_attention`` (bool ``allowed``, True = attend): each of the two
        maps of head h reads V_h, and the outputs are combined, ``A_1 V - lambda A_2 V = (A_1 - lambda A_2) V``."""
        if lam is None:
            return F.scaled_dot_product_attention(q, kk, v, attn_mask=allowed, scale=self.scaling)
        B, S, Q, hd = q.shape
        vv = v.repeat_interleave(2, dim=1)  # (B, S, T, 2hd): sub-heads 2h and 2h+1 read V_h
        # Q and K padded with zeros to V's width 2hd (same scores): the fused kernels want one head width
        q, kk = F.pad(q, (0, hd)), F.pad(kk, (0, hd))
        o = F.scaled_dot_product_attention(q, kk, vv, attn_mask=allowed, scale=self.scaling)
        o = o.view(B, S // 2, 2, Q, o.size(-1))  # (B, H, 2, Q, 2hd)
        return o[:, :, 0] - lam * o[:, :, 1]  # (B, H, Q, 2hd)

    def extra_repr(self) -> str:
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}"
        if self.differential:
            s += f", layer_idx={self.layer_idx}, lambda_init={self.lambda_init:.4f}"
        else:
            s += ", differential=False"
        return s
