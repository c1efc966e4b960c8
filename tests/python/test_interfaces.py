"""The drop-in entry points: scaled_dot_product_attention and the flash-attn 2.x functions."""

import pytest

torch = pytest.importorskip("torch")

import tileflash  # noqa: E402
from conftest import assert_close, randn, reference_attention  # noqa: E402

F = torch.nn.functional


def bhsd(rng, batch, heads, seq, dim, dtype=torch.float64):
    return randn(rng, batch, heads, seq, dim, dtype=dtype)


@pytest.mark.parametrize("seq_q,seq_k", [(37, 37), (41, 23), (1, 50), (13, 64)])
@pytest.mark.parametrize("mask", ["none", "causal", "bool", "float", "padding"])
def test_sdpa_matches_torch(rng, seq_q, seq_k, mask):
    q, k, v = bhsd(rng, 2, 4, seq_q, 16), bhsd(rng, 2, 4, seq_k, 16), bhsd(rng, 2, 4, seq_k, 16)
    kwargs = {}
    if mask == "causal":
        kwargs["is_causal"] = True
    elif mask == "bool":
        kwargs["attn_mask"] = torch.rand(seq_q, seq_k, generator=rng) > 0.2
        kwargs["attn_mask"][:, 0] = True  # torch gives NaN for fully masked rows, tileflash 0
    elif mask == "float":
        kwargs["attn_mask"] = randn(rng, 2, 1, seq_q, seq_k, dtype=torch.float64)
    elif mask == "padding":
        kwargs["attn_mask"] = torch.ones(2, 1, 1, seq_k, dtype=torch.bool)
        kwargs["attn_mask"][1, ..., seq_k // 2:] = False
    ours = tileflash.scaled_dot_product_attention(q, k, v, scale=0.3, **kwargs)
    theirs = F.scaled_dot_product_attention(q, k, v, scale=0.3, **kwargs)
    assert ours.shape == theirs.shape
    assert_close(ours, theirs)


def test_sdpa_gqa_unbatched_and_gradients(rng):
    q = bhsd(rng, 1, 6, 29, 8).requires_grad_()
    k = bhsd(rng, 1, 2, 31, 8).requires_grad_()
    v = bhsd(rng, 1, 2, 31, 8).requires_grad_()
    ours = tileflash.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    theirs = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    assert_close(ours, theirs)
    dout = torch.randn_like(ours)
    for got, want in zip(torch.autograd.grad(ours, (q, k, v), dout), torch.autograd.grad(theirs, (q, k, v), dout)):
        assert_close(got, want)
    unbatched = tileflash.scaled_dot_product_attention(q[0], k[0], v[0], enable_gqa=True)
    assert_close(unbatched, theirs[0])


def test_sdpa_output_is_a_view_of_the_flash_layout(rng):
    q, k, v = bhsd(rng, 2, 4, 16, 8), bhsd(rng, 2, 4, 16, 8), bhsd(rng, 2, 4, 16, 8)
    out = tileflash.scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 4, 16, 8)
    assert out.transpose(1, 2).is_contiguous()


def test_flash_attn_func_return_conventions(rng):
    q = randn(rng, 2, 19, 4, 16, dtype=torch.float64)
    k = randn(rng, 2, 23, 2, 16, dtype=torch.float64)
    v = randn(rng, 2, 23, 2, 16, dtype=torch.float64)
    slopes = torch.rand(4, generator=rng)
    out = tileflash.flash_attn_func(q, k, v, softmax_scale=0.2, causal=True, window_size=(6, -1), softcap=5.0,
                                    alibi_slopes=slopes)
    expected, expected_lse = reference_attention(q, k, v, scale=0.2, causal=True, window=(6, -1), softcap=5.0,
                                                 alibi_slopes=slopes)
    assert torch.is_tensor(out)
    assert_close(out, expected)
    out2, lse, probs = tileflash.flash_attn_func(q, k, v, softmax_scale=0.2, causal=True, window_size=(6, -1),
                                                 softcap=5.0, alibi_slopes=slopes, return_attn_probs=True)
    assert probs is None and lse.shape == (2, 4, 19)
    assert torch.equal(out, out2)
    assert_close(lse, expected_lse.float())


def test_flash_attn_varlen_func(rng):
    cu = torch.tensor([0, 4, 4, 11], dtype=torch.int32)
    q = randn(rng, 11, 2, 8, dtype=torch.float64)
    k = randn(rng, 11, 1, 8, dtype=torch.float64)
    v = randn(rng, 11, 1, 8, dtype=torch.float64)
    out, lse, probs = tileflash.flash_attn_varlen_func(q, k, v, cu, cu, 7, 7, causal=True, return_attn_probs=True)
    assert probs is None and lse.shape == (2, 11)
    first = reference_attention(q[None, :4], k[None, :4], v[None, :4], causal=True)[0][0]
    second = reference_attention(q[None, 4:], k[None, 4:], v[None, 4:], causal=True)[0][0]
    assert_close(out, torch.cat([first, second]))
    with pytest.raises(ValueError, match="block_table"):
        tileflash.flash_attn_varlen_func(q, k, v, cu, cu, 7, 7, block_table=torch.zeros(3, 1, dtype=torch.int32))


def test_flash_attn_packed_functions_match_unpacked(rng):
    qkv = randn(rng, 2, 17, 3, 2, 8, dtype=torch.float64).requires_grad_()
    out = tileflash.flash_attn_qkvpacked_func(qkv, causal=True)
    q, k, v = qkv.detach().unbind(2)
    assert_close(out, reference_attention(q, k, v, causal=True)[0])
    out.sum().backward()
    assert qkv.grad.shape == qkv.shape and torch.isfinite(qkv.grad).all()
    kv = qkv.detach()[:, :, 1:]
    assert_close(tileflash.flash_attn_kvpacked_func(q, kv), reference_attention(q, k, v)[0])
