"""tileflash.attention on CPU torch tensors: forward and backward against a float64 reference."""

import math

import pytest

torch = pytest.importorskip("torch")

import tileflash  # noqa: E402
from conftest import (assert_close, dropout_keep_mask, plain_attention, plain_gradients, randn,
                      reference_attention)  # noqa: E402

# (batch, seq_q, seq_k, heads_q, heads_kv, head_dim): odd sizes, seq_q != seq_k both ways,
# GQA and MQA, Pythia's head dim 80.
SHAPES = [
    (1, 1, 1, 1, 1, 8),
    (2, 37, 37, 4, 2, 64),
    (1, 77, 50, 2, 2, 32),
    (1, 37, 577, 3, 1, 80),
]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
FEATURES = ["plain", "causal", "window", "bias", "mask", "alibi", "softcap", "all"]


def make_features(name, rng, batch, seq_q, seq_k, heads_q):
    if name == "plain":
        return {}
    if name == "causal":
        return {"causal": True}
    if name == "window":
        return {"window": (5, 3)}
    if name == "bias":
        return {"bias": randn(rng, 1, heads_q, seq_q, seq_k)}
    if name == "mask":
        # A padding-style mask broadcast over heads and query rows; some rows of keys vanish.
        return {"bias": torch.rand(batch, 1, 1, seq_k, generator=rng) > 0.3}
    if name == "alibi":
        return {"alibi_slopes": torch.rand(heads_q, generator=rng) * 0.5}
    if name == "softcap":
        return {"softcap": 2.5, "scale": 0.9}
    if name == "all":
        return {"causal": True, "window": (9, -1), "bias": randn(rng, batch, 1, seq_q, seq_k),
                "alibi_slopes": torch.rand(batch, heads_q, generator=rng) * 0.3, "softcap": 4.0}
    raise AssertionError(name)


def inputs(rng, shape, dtype, requires_grad=False):
    batch, seq_q, seq_k, heads_q, heads_kv, dim = shape
    q = randn(rng, batch, seq_q, heads_q, dim, dtype=dtype)
    k = randn(rng, batch, seq_k, heads_kv, dim, dtype=dtype)
    v = randn(rng, batch, seq_k, heads_kv, dim, dtype=dtype)
    return [t.requires_grad_(requires_grad) for t in (q, k, v)]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("feature", FEATURES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_reference(rng, shape, feature, dtype, backend):
    q, k, v = inputs(rng, shape, dtype)
    features = make_features(feature, rng, shape[0], shape[1], shape[2], shape[3])
    out, lse = tileflash.attention(q, k, v, return_lse=True, backend=backend, **features)
    expected_out, expected_lse = reference_attention(q, k, v, **features)
    plain_out, plain_lse = plain_attention(q, k, v, **features)
    assert out.dtype == dtype and lse.dtype == torch.float32
    assert_close(out, expected_out, plain_out, name="out")
    assert_close(lse, expected_lse.float(), plain_lse, name="lse")


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("feature", FEATURES)
@pytest.mark.parametrize("shape", SHAPES[1:], ids=lambda s: "x".join(map(str, s)))
def test_backward_matches_reference(rng, shape, feature, dtype, backend):
    q, k, v = inputs(rng, shape, dtype, requires_grad=True)
    features = make_features(feature, rng, shape[0], shape[1], shape[2], shape[3])
    dout = randn(rng, *q.shape, dtype=dtype)
    out = tileflash.attention(q, k, v, backend=backend, **features)
    grads = torch.autograd.grad(out, (q, k, v), dout)

    leaves64 = [t.detach().double().requires_grad_() for t in (q, k, v)]
    expected = torch.autograd.grad(reference_attention(*leaves64, **features)[0], leaves64, dout.double())
    plain = plain_gradients(q, k, v, dout, **features)
    for name, grad, want, budget in zip(("dq", "dk", "dv"), grads, expected, plain):
        assert grad.dtype == dtype
        assert_close(grad, want, budget, name=name)


# A key's dK/dV sum over every query row below it: their fp32 rounding over thousands of rows
# must stay that of a blocked product (one fp32 sum over all rows broke the rule).
@pytest.mark.parametrize("seq", [1000, 4097])
def test_long_causal_sequence_forward_and_backward(rng, seq):
    q, k, v = inputs(rng, (1, seq, seq, 2, 1, 64), torch.float32, requires_grad=True)
    out = tileflash.attention(q, k, v, causal=True)
    dout = randn(rng, *out.shape)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    expected_out = reference_attention(*leaves, causal=True)[0]
    expected = torch.autograd.grad(expected_out, leaves, dout.double())
    plain_out = plain_attention(q, k, v, causal=True)[0]
    plain = plain_gradients(q, k, v, dout, causal=True)
    assert_close(out, expected_out, plain_out, name="out")
    for name, grad, want, budget in zip(("dq", "dk", "dv"), grads, expected, plain):
        assert_close(grad, want, budget, name=name)


def test_gradcheck_float64_reference():
    generator = torch.Generator().manual_seed(torch.seed() % 2**31)
    q = torch.randn(1, 3, 4, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    k = torch.randn(1, 5, 2, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    v = torch.randn(1, 5, 2, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(1, 4, 3, 5, dtype=torch.float64, generator=generator)
    slopes = torch.rand(4, generator=generator, dtype=torch.float64).float()

    def fn(q, k, v):
        return tileflash.attention(q, k, v, causal=True, bias=bias, alibi_slopes=slopes, softcap=3.0,
                                   backend="reference")

    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_fully_masked_rows_give_zero_output_minus_inf_lse_and_zero_gradients(rng):
    # seq_q > seq_k with bottom-right causal alignment: the first seq_q - seq_k rows see no key.
    q, k, v = inputs(rng, (1, 9, 4, 2, 2, 16), torch.float32, requires_grad=True)
    out, lse = tileflash.attention(q, k, v, causal=True, return_lse=True)
    assert torch.equal(out[:, :5], torch.zeros_like(out[:, :5]))
    assert torch.isneginf(lse[:, :, :5]).all() and torch.isfinite(lse[:, :, 5:]).all()
    out.backward(torch.ones_like(out))
    assert torch.equal(q.grad[:, :5], torch.zeros_like(q.grad[:, :5]))
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_large_logits_do_not_overflow(rng):
    q, k, v = inputs(rng, (1, 37, 41, 2, 2, 32), torch.float32)
    q = q * 300.0  # logits of magnitude ~1e4
    out = tileflash.attention(q, k, v)
    expected, _ = reference_attention(q, k, v)
    plain, _ = plain_attention(q, k, v)
    assert_close(out, expected, plain)


def test_strided_views_are_read_in_place(rng):
    # q, k, v sliced out of one packed (batch, seq, 3, heads, dim) buffer and a (batch, heads, seq, dim) one.
    qkv = randn(rng, 2, 33, 3, 4, 32)
    q, k, v = qkv.unbind(2)
    out = tileflash.attention(q, k, v, causal=True)
    expected = tileflash.attention(q.contiguous(), k.contiguous(), v.contiguous(), causal=True)
    assert torch.equal(out, expected)
    bhsd = randn(rng, 2, 4, 33, 32)
    out = tileflash.attention(bhsd.transpose(1, 2), k, v)
    assert torch.equal(out, tileflash.attention(bhsd.transpose(1, 2).contiguous(), k, v))
    # A head_dim with a stride other than 1 is copied, not rejected.
    wide = randn(rng, 2, 33, 4, 64)[..., ::2]
    assert torch.equal(tileflash.attention(wide, k, v), tileflash.attention(wide.contiguous(), k, v))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_varlen_matches_each_sequence_alone(rng, dtype):
    lengths_q = [5, 0, 37, 1, 64]
    lengths_k = [9, 3, 37, 1, 100]
    heads_q, heads_kv, dim = 4, 2, 32
    q = randn(rng, sum(lengths_q), heads_q, dim, dtype=dtype).requires_grad_()
    k = randn(rng, sum(lengths_k), heads_kv, dim, dtype=dtype).requires_grad_()
    v = randn(rng, sum(lengths_k), heads_kv, dim, dtype=dtype).requires_grad_()
    cu_q = torch.tensor([0] + lengths_q, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    cu_k = torch.tensor([0] + lengths_k, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    slopes = torch.rand(heads_q, generator=rng)
    out, lse = tileflash.attention(q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, causal=True,
                                   alibi_slopes=slopes, return_lse=True)
    assert out.shape == q.shape and lse.shape == (heads_q, q.shape[0])
    dout = randn(rng, *out.shape, dtype=dtype)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    checks = []
    for b in range(len(lengths_q)):
        rq = slice(int(cu_q[b]), int(cu_q[b + 1]))
        rk = slice(int(cu_k[b]), int(cu_k[b + 1]))
        if rq.stop == rq.start:
            continue
        pieces = (q[rq], k[rk], v[rk])
        leaves = [t.detach().double().unsqueeze(0).requires_grad_() for t in pieces]
        ref_out, ref_lse = reference_attention(*leaves, causal=True, alibi_slopes=slopes)
        ref_grads = torch.autograd.grad(ref_out, leaves, dout[rq].double().unsqueeze(0))
        pieces = [t.detach().unsqueeze(0) for t in pieces]
        plain_out, plain_lse = plain_attention(*pieces, causal=True, alibi_slopes=slopes)
        plain_grads = plain_gradients(*pieces, dout[rq].unsqueeze(0), causal=True, alibi_slopes=slopes)
        assert_close(out[rq], ref_out[0], plain_out[0], name=f"out[{b}]")
        assert_close(lse[:, rq], ref_lse[0].float(), plain_lse[0], name=f"lse[{b}]")
        checks.append((b, rq, rk, ref_grads, plain_grads))
    # A sequence with a single key has dq = 0 exactly, reached through dP - D cancelling;
    # its floor is taken from the reference gradient of every sequence together.
    magnitudes = [max(float(c[3][i].abs().max()) for c in checks) for i in range(3)]
    for b, rq, rk, ref_grads, plain_grads in checks:
        for i, (name, grad, want, budget) in enumerate(zip(("dq", "dk", "dv"), grads, ref_grads, plain_grads)):
            rows = rq if name == "dq" else rk
            assert_close(grad[rows], want[0], budget[0], name=f"{name}[{b}]", magnitude=magnitudes[i])


def test_varlen_bias_uses_sequence_local_indices(rng):
    lengths = [3, 7]
    q = randn(rng, sum(lengths), 2, 16, dtype=torch.float64)
    k = randn(rng, sum(lengths), 2, 16, dtype=torch.float64)
    v = randn(rng, sum(lengths), 2, 16, dtype=torch.float64)
    cu = torch.tensor([0, 3, 10], dtype=torch.int32)
    bias = randn(rng, 2, 1, 7, 7, dtype=torch.float64)
    out = tileflash.attention(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, bias=bias)
    first = reference_attention(q[None, :3], k[None, :3], v[None, :3], bias=bias[:1, :, :3, :3])[0][0]
    second = reference_attention(q[None, 3:], k[None, 3:], v[None, 3:], bias=bias[1:])[0][0]
    assert_close(out, torch.cat([first, second]))


def rng_state_after_seed(seed):
    torch.manual_seed(seed)
    return torch.randint(-(2**63), 2**63 - 1, (2,), dtype=torch.int64).tolist()


@pytest.mark.parametrize("backend,dtype", [("reference", torch.float64), ("cpu", torch.float32)])
def test_dropout_draws_the_philox_stream_from_torch_seed(rng, backend, dtype):
    shape = (2, 19, 37, 3, 3, 16)
    q, k, v = inputs(rng, shape, dtype, requires_grad=True)
    p = 0.3
    seed = int(torch.randint(0, 2**31, (1,), generator=rng))
    philox_seed, philox_offset = rng_state_after_seed(seed)
    keep = dropout_keep_mask(philox_seed, philox_offset, p, 2, 3, 19, 37)

    torch.manual_seed(seed)
    out = tileflash.attention(q, k, v, dropout_p=p, backend=backend)
    dout = randn(rng, *out.shape, dtype=dtype)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    expected = reference_attention(*leaves, keep=keep, dropout_p=p)[0]
    expected_grads = torch.autograd.grad(expected, leaves, dout.double())
    plain = plain_attention(q.detach(), k.detach(), v.detach(), keep=keep, dropout_p=p)[0]
    plain_grads = plain_gradients(q, k, v, dout, keep=keep, dropout_p=p)
    assert_close(out, expected, plain, name="out")
    for name, grad, want, budget in zip(("dq", "dk", "dv"), grads, expected_grads, plain_grads):
        assert_close(grad, want, budget, name=name)


def test_dropout_is_repeatable_under_manual_seed_and_keeps_the_right_fraction(rng):
    q, k, v = inputs(rng, (1, 64, 256, 2, 2, 16), torch.float64)
    ones = torch.ones_like(v)
    torch.manual_seed(7)
    first = tileflash.attention(q, k, ones, dropout_p=0.25, backend="reference")
    torch.manual_seed(7)
    again = tileflash.attention(q, k, ones, dropout_p=0.25, backend="reference")
    other = tileflash.attention(q, k, ones, dropout_p=0.25, backend="reference")
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # With v = 1 each output is sum_j keep_ij P_ij / (1 - p): its mean over rows is 1 within sampling noise.
    mean = first.mean().item()
    assert abs(mean - 1.0) < 0.05, mean


def test_deterministic_backward_is_bitwise_repeatable(rng):
    q, k, v = inputs(rng, (2, 57, 57, 4, 2, 32), torch.float32, requires_grad=True)
    dout = randn(rng, *q.shape)
    results = []
    for _ in range(2):
        out = tileflash.attention(q, k, v, causal=True, deterministic=True)
        results.append(torch.autograd.grad(out, (q, k, v), dout))
    for first, second in zip(*results):
        assert torch.equal(first, second)


def test_lse_carries_no_gradient(rng):
    q, k, v = inputs(rng, (1, 5, 5, 1, 1, 8), torch.float32, requires_grad=True)
    out, lse = tileflash.attention(q, k, v, return_lse=True)
    assert out.requires_grad and not lse.requires_grad


def test_scale_default_and_explicit(rng):
    q, k, v = inputs(rng, (1, 9, 11, 2, 2, 24), torch.float64)
    assert torch.allclose(tileflash.attention(q, k, v), tileflash.attention(q, k, v, scale=1 / math.sqrt(24)),
                          rtol=0, atol=1e-14)
    assert_close(tileflash.attention(q, k, v, scale=0.05), reference_attention(q, k, v, scale=0.05)[0])
