"""Bad arguments raise ValueError (broken rule) or TypeError (wrong kind of object), naming the argument."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tileflash  # noqa: E402


def qkv(batch=1, seq_q=5, seq_k=6, heads_q=2, heads_kv=2, dim=8, dtype=torch.float64):
    return (torch.randn(batch, seq_q, heads_q, dim, dtype=dtype), torch.randn(batch, seq_k, heads_kv, dim, dtype=dtype),
            torch.randn(batch, seq_k, heads_kv, dim, dtype=dtype))


VALUE_ERRORS = [
    ("head dim mismatch", lambda q, k, v: tileflash.attention(q, k[..., :4], v), "k: head_dim must equal"),
    ("gqa divisibility", lambda q, k, v: tileflash.attention(torch.randn(1, 5, 3, 8, dtype=torch.float64), k, v),
     "multiple of heads_kv"),
    ("rank", lambda q, k, v: tileflash.attention(q[0], k[0], v[0]), "rank"),
    ("dropout range", lambda q, k, v: tileflash.attention(q, k, v, dropout_p=1.0), "dropout_p"),
    ("negative dropout", lambda q, k, v: tileflash.attention(q, k, v, dropout_p=-0.1), "dropout_p"),
    ("softcap", lambda q, k, v: tileflash.attention(q, k, v, softcap=-1.0), "softcap"),
    ("window pair", lambda q, k, v: tileflash.attention(q, k, v, window=(1, 2, 3)), "window"),
    ("window side", lambda q, k, v: tileflash.attention(q, k, v, window=(-2, 0)), "window_left"),
    ("bias shape", lambda q, k, v: tileflash.attention(q, k, v, bias=torch.zeros(1, 1, 4, 6)), "bias"),
    ("bias batch", lambda q, k, v: tileflash.attention(q, k, v, bias=torch.zeros(3, 1, 5, 6)), "bias"),
    ("alibi shape", lambda q, k, v: tileflash.attention(q, k, v, alibi_slopes=torch.ones(3)), "alibi_slopes"),
    ("backend name", lambda q, k, v: tileflash.attention(q, k, v, backend="tpu"), "backend"),
    ("float64 on cpu backend", lambda q, k, v: tileflash.attention(q, k, v, backend="cpu"), "float64"),
    ("cuda backend on cpu tensors", lambda q, k, v: tileflash.attention(q, k, v, backend="cuda"), "backend"),
    ("mixed dtypes", lambda q, k, v: tileflash.attention(q, k.float(), v), "dtype must match q"),
    ("cu_seqlens alone", lambda q, k, v: tileflash.attention(q[0], k[0], v[0], cu_seqlens_q=torch.tensor([0, 5])),
     "cu_seqlens_k"),
    ("cu_seqlens not monotone", lambda q, k, v: tileflash.attention(
        q[0], k[0], v[0], cu_seqlens_q=torch.tensor([0, 4, 2]), cu_seqlens_k=torch.tensor([0, 3, 6])),
     "non-decreasing"),
    ("cu_seqlens past the end", lambda q, k, v: tileflash.attention(
        q[0], k[0], v[0], cu_seqlens_q=torch.tensor([0, 9]), cu_seqlens_k=torch.tensor([0, 6])), "exceeds"),
    ("max_seqlen too small", lambda q, k, v: tileflash.attention(
        q[0], k[0], v[0], cu_seqlens_q=torch.tensor([0, 5]), cu_seqlens_k=torch.tensor([0, 6]), max_seqlen_q=2),
     "max_seqlen"),
    ("bias gradient", lambda q, k, v: tileflash.attention(q, k, v, bias=torch.zeros(1, 1, 5, 6, requires_grad=True)),
     "bias.detach"),
    ("sdpa mask and causal", lambda q, k, v: tileflash.scaled_dot_product_attention(
        q, k, v, attn_mask=torch.ones(5, 6, dtype=torch.bool), is_causal=True), "attn_mask"),
    ("sdpa gqa flag", lambda q, k, v: tileflash.scaled_dot_product_attention(
        torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)), "enable_gqa"),
    ("flash window", lambda q, k, v: tileflash.flash_attn_func(q, k, v, window_size=3), "window_size"),
]


@pytest.mark.parametrize("case", VALUE_ERRORS, ids=[c[0] for c in VALUE_ERRORS])
def test_value_errors_name_the_argument(case):
    _, call, message = case
    with pytest.raises(ValueError, match=message) as error:
        call(*qkv())
    assert str(error.value).startswith("tileflash: ")


TYPE_ERRORS = [
    ("list input", lambda q, k, v: tileflash.attention(q.tolist(), k, v), "q"),
    ("mixed numpy and torch", lambda q, k, v: tileflash.attention(q.numpy(), k, v), "q"),
    ("integer tensors", lambda q, k, v: tileflash.attention(q.long(), k.long(), v.long()), "q: unsupported dtype"),
    ("bias type", lambda q, k, v: tileflash.attention(q, k, v, bias=[[0.0]]), "bias"),
    ("bias integer", lambda q, k, v: tileflash.attention(q, k, v, bias=torch.zeros(5, 6, dtype=torch.int64)), "bias"),
    ("window type", lambda q, k, v: tileflash.attention(q, k, v, window=(1.5, 0)), "window"),
    ("dropout type", lambda q, k, v: tileflash.attention(q, k, v, dropout_p="0.1"), "dropout_p"),
    ("cu_seqlens float", lambda q, k, v: tileflash.attention(
        q[0], k[0], v[0], cu_seqlens_q=torch.tensor([0.0, 5.0]), cu_seqlens_k=torch.tensor([0, 6])), "cu_seqlens_q"),
    ("max_seqlen type", lambda q, k, v: tileflash.attention(
        q[0], k[0], v[0], cu_seqlens_q=torch.tensor([0, 5]), cu_seqlens_k=torch.tensor([0, 6]), max_seqlen_q=5.0),
     "max_seqlen_q"),
    ("sdpa numpy", lambda q, k, v: tileflash.scaled_dot_product_attention(q.numpy(), k.numpy(), v.numpy()), "query"),
]


@pytest.mark.parametrize("case", TYPE_ERRORS, ids=[c[0] for c in TYPE_ERRORS])
def test_type_errors_name_the_argument(case):
    _, call, message = case
    with pytest.raises(TypeError, match=message):
        call(*qkv())


def test_validation_failure_writes_nothing():
    q, k, v = qkv()
    out = torch.full_like(q, 7.0)
    options = tileflash._C.Options()
    options.dropout_p = 2.0
    with pytest.raises(ValueError, match="dropout_p"):
        tileflash._C.forward(q, k, v, out, None, options)
    assert (out == 7.0).all()


def test_numpy_arrays_of_unsupported_dtype_are_type_errors():
    q = np.zeros((1, 2, 1, 4), dtype=np.int16)
    with pytest.raises(TypeError, match="unsupported dtype int16"):
        tileflash.attention(q, q, q)
