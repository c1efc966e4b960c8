"""Shared helpers of the Python tests: a float64 reference, Philox dropout masks, tolerances.

The reference is written from the semantics in docs/design.md, independently of the
library: logits scale -> softcap -> bias -> ALiBi -> bottom-right band mask, softmax,
dropout with the Philox stream of src/common/philox.h.
"""

import math

import numpy as np
import pytest

try:
    import torch
except ImportError:
    torch = None


def pytest_collection_modifyitems(config, items):
    has_gpu = torch is not None and torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


# ---- Philox 4x32-10, vectorised over numpy uint32 arrays -------------------------------

_MUL0, _MUL1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_WEYL0, _WEYL1 = 0x9E3779B9, 0xBB67AE85
_LOW32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in (c0, c1, c2, c3))
    for _ in range(10):
        p0 = _MUL0 * c0
        p1 = _MUL1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & _LOW32
        hi1, lo1 = p1 >> np.uint64(32), p1 & _LOW32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        k0 = (k0 + _WEYL0) & 0xFFFFFFFF
        k1 = (k1 + _WEYL1) & 0xFFFFFFFF
    return c0, c1, c2, c3


def dropout_keep_mask(seed, offset, p, batch, heads_q, seq_q, seq_k):
    """keep[b, h, i, j] of the dropout stream: word j % 4 of Philox({j/4, i, b*heads_q + h, lo(offset)})."""
    seed &= (1 << 64) - 1
    offset &= (1 << 64) - 1
    k0 = seed & 0xFFFFFFFF
    k1 = ((seed >> 32) + (offset >> 32)) & 0xFFFFFFFF
    groups = (seq_k + 3) // 4
    bh = np.arange(batch * heads_q, dtype=np.uint64).reshape(-1, 1, 1)
    row = np.arange(seq_q, dtype=np.uint64).reshape(1, -1, 1)
    col_group = np.arange(groups, dtype=np.uint64).reshape(1, 1, -1)
    shape = (batch * heads_q, seq_q, groups)
    words = philox4x32_10(np.broadcast_to(col_group, shape), np.broadcast_to(row, shape),
                          np.broadcast_to(bh, shape), np.full(shape, offset & 0xFFFFFFFF, dtype=np.uint64), k0, k1)
    bits = np.stack(words, axis=-1).reshape(batch, heads_q, seq_q, groups * 4)[..., :seq_k]
    scaled = p * 4294967296.0
    threshold = 0xFFFFFFFF if scaled >= 4294967295.0 else int(scaled)
    return bits >= np.uint64(threshold)


# ---- the float64 reference ---------------------------------------------------------------

def reference_attention(q, k, v, *, causal=False, window=(-1, -1), bias=None, softcap=0.0, scale=None,
                        alibi_slopes=None, keep=None, dropout_p=0.0, compute_dtype=None, round_probs_to=None):
    """Dense attention in float64 (or compute_dtype), (batch, seq, heads, dim) layout. Returns (out, lse).

    Differentiable with respect to q, k, v (fully masked rows give zero gradients).
    `keep` is a (batch, heads_q, seq_q, seq_k) bool dropout mask.
    """
    compute_dtype = torch.float64 if compute_dtype is None else compute_dtype
    q, k, v = (t.to(compute_dtype) for t in (q, k, v))
    batch, seq_q, heads_q, dim = q.shape
    seq_k, heads_kv = k.shape[1], k.shape[2]
    group = heads_q // heads_kv
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    scale = 1.0 / math.sqrt(dim) if scale is None else scale
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    if bias is not None:
        if bias.dtype == torch.bool:
            s = s.masked_fill(~bias, -math.inf)
        else:
            s = s + bias.to(compute_dtype)
    row = torch.arange(seq_q).reshape(-1, 1)
    col = torch.arange(seq_k).reshape(1, -1)
    diagonal = row + seq_k - seq_q
    if alibi_slopes is not None:
        slopes = alibi_slopes.to(compute_dtype).cpu()
        slopes = slopes.reshape(1, -1, 1, 1) if slopes.dim() == 1 else slopes.reshape(batch, -1, 1, 1)
        s = s - slopes.to(s.device) * (col - diagonal).abs().to(s.device)
    left, right = window
    if causal:
        right = 0
    allowed = torch.ones(seq_q, seq_k, dtype=torch.bool)
    if left >= 0:
        allowed &= col >= diagonal - left
    if right >= 0:
        allowed &= col <= diagonal + right
    s = s.masked_fill(~allowed.to(s.device), -math.inf)
    lse = torch.logsumexp(s, dim=-1)
    finite_lse = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    p = torch.exp(s - finite_lse.unsqueeze(-1))
    if keep is not None:
        p = p * torch.as_tensor(keep, device=p.device) / (1.0 - dropout_p)
    if round_probs_to is not None:
        p = p.to(round_probs_to).to(compute_dtype)
    out = torch.einsum("bhqk,bkhd->bqhd", p, v)
    return out, lse


def plain_attention(q, k, v, **kwargs):
    """The same formula in the inputs' own precision: float32 arithmetic, and for 16-bit inputs
    P rounded to that type before P V, as a straightforward implementation would. Its error
    against the float64 reference is the error budget of a kernel."""
    low = q.dtype if q.dtype in (torch.float16, torch.bfloat16) else None
    out, lse = reference_attention(q, k, v, compute_dtype=torch.float32, round_probs_to=low, **kwargs)
    return out.to(q.dtype), lse.float()


def plain_gradients(q, k, v, dout, **kwargs):
    """dq, dk, dv of autograd through the formula evaluated entirely in the inputs' dtype:
    the error budget of a backward kernel (FlashAttention-3's reference without upcasting)."""
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    out, _ = reference_attention(*leaves, compute_dtype=q.dtype, **kwargs)
    return torch.autograd.grad(out, leaves, dout.to(q.dtype))


# Floors of the rule, relative to max(1, |reference|). float32's is the C++ suite's
# (tests/common/accuracy.cpp): a recomputation backward rebuilds P from the stored fp32
# log-sum-exp, whose rounding (one ulp of |lse| ~ 10 is ~1e-6) the plain fp32 baseline,
# which never rounds an lse, does not carry; with 1e-6 a causal seq-1000 fp32 backward
# failed on dK/dV for 2 of 40 random inputs (worst 6x the baseline's error), with 2e-6
# on none of 100.
EPS = {"float64": 1e-6, "float32": 2e-6, "float16": 5e-4, "bfloat16": 4e-3}


def assert_close(actual, expected, plain=None, *, factor=3.0, name="output", magnitude=None):
    """max|actual - expected| <= factor * max|plain - expected| + eps * max(1, magnitude), eps by dtype.

    `expected` is the float64 reference; `plain` the same computation in the actual's
    precision (FlashAttention-3's rule: a kernel may be as inexact as a plain
    implementation of its own precision, not more). `magnitude` defaults to
    max|expected|; a caller comparing one slice of a tensor passes the whole tensor's,
    since a slice whose exact value cancels to 0 still carries the rounding of the terms
    that cancelled.
    """
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    actual64 = torch.as_tensor(actual).double().cpu()
    expected64 = torch.as_tensor(expected).double().cpu()
    both_inf = torch.isinf(actual64) & torch.isinf(expected64) & (torch.sign(actual64) == torch.sign(expected64))
    assert torch.isfinite(actual64[~both_inf]).all(), f"{name}: non-finite values where the reference is finite"
    diff = (actual64 - expected64).abs().masked_fill(both_inf, 0.0)
    dtype = str(actual.dtype).replace("torch.", "")
    finite = expected64[torch.isfinite(expected64)]
    if magnitude is None:
        magnitude = finite.abs().max().item() if finite.numel() else 0.0
    scale = max(1.0, magnitude)
    budget = EPS.get(dtype, 1e-6) * scale
    if plain is not None:
        plain64 = torch.as_tensor(plain).double().cpu()
        plain_diff = (plain64 - expected64).abs().masked_fill(both_inf, 0.0)
        budget += factor * plain_diff.max().item()
    worst = diff.max().item() if diff.numel() else 0.0
    assert worst <= budget, f"{name}: max error {worst:.3g} exceeds {budget:.3g}"


@pytest.fixture
def rng():
    """A fresh generator per test, seeded from the test's own randomness so that inputs differ between runs."""
    seed = int(np.random.SeedSequence().entropy % (2**31))
    print(f"test input seed: {seed}")
    return torch.Generator().manual_seed(seed) if torch is not None else None


def randn(rng, *shape, dtype=None, device="cpu"):
    dtype = torch.float32 if dtype is None else dtype
    return torch.randn(*shape, generator=rng, dtype=torch.float64).to(dtype=dtype, device=device)
