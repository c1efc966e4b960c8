"""torch.compile(fullgraph=True) runs tileflash without graph breaks; the custom ops pass opcheck."""

import pytest

torch = pytest.importorskip("torch")

import tileflash  # noqa: E402
from conftest import assert_close, randn, reference_attention  # noqa: E402


def sample_inputs(rng, dtype=torch.float64):
    q = randn(rng, 2, 19, 4, 16, dtype=dtype).requires_grad_()
    k = randn(rng, 2, 23, 2, 16, dtype=dtype).requires_grad_()
    v = randn(rng, 2, 23, 2, 16, dtype=dtype).requires_grad_()
    return q, k, v


def block(q, k, v, bias):
    # Some ordinary torch work around the op, so the graph has more than one node.
    out = tileflash.attention(torch.tanh(q), k * 2.0, v, causal=True, bias=bias, softcap=8.0)
    return (out * out).sum(dim=-1)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_forward_and_backward(rng, backend):
    torch._dynamo.reset()
    q, k, v = sample_inputs(rng)
    bias = randn(rng, 1, 4, 19, 23, dtype=torch.float64)
    compiled = torch.compile(block, fullgraph=True, backend=backend)
    got = compiled(q, k, v, bias)
    dout = torch.randn_like(got)
    grads = torch.autograd.grad(got, (q, k, v), dout)

    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    expected = (reference_attention(torch.tanh(leaves[0]), leaves[1] * 2.0, leaves[2], causal=True, bias=bias,
                                    softcap=8.0)[0] ** 2).sum(dim=-1)
    expected_grads = torch.autograd.grad(expected, leaves, dout)
    assert_close(got, expected)
    for grad, want in zip(grads, expected_grads):
        assert_close(grad, want)


def test_compile_with_dropout_and_varlen_has_no_graph_break(rng):
    torch._dynamo.reset()
    cu = torch.tensor([0, 7, 19], dtype=torch.int32)
    q = randn(rng, 19, 2, 8, dtype=torch.float64).requires_grad_()

    def fn(q, cu):
        out, lse = tileflash.attention(q, q, q, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=12, max_seqlen_k=12,
                                       dropout_p=0.2, return_lse=True)
        return out.sum() + lse.sum()

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    torch.manual_seed(3)
    got = compiled(q, cu)
    got.backward()
    torch.manual_seed(3)
    assert torch.equal(got, fn(q, cu))


def test_sdpa_variant_compiles(rng):
    torch._dynamo.reset()
    q = randn(rng, 1, 4, 9, 8, dtype=torch.float64)
    mask = torch.rand(9, 9, generator=rng) > 0.3
    mask[:, 0] = True
    compiled = torch.compile(tileflash.scaled_dot_product_attention, fullgraph=True, backend="aot_eager")
    assert_close(compiled(q, q, q, attn_mask=mask), torch.nn.functional.scaled_dot_product_attention(q, q, q, mask))


def test_custom_ops_pass_opcheck(rng):
    q, k, v = (t.detach() for t in sample_inputs(rng))
    bias = randn(rng, 1, 1, 19, 23, dtype=torch.float64)
    rng_state = torch.tensor([11, 5], dtype=torch.int64)
    forward_args = (q, k, v, bias, None, None, None, 0, 0, 0.25, -1, 0, 0.0, 0.1, rng_state, False, "auto", None, None,
                    None, None)
    torch.library.opcheck(torch.ops.tileflash.attention_forward.default, forward_args)
    out, lse = torch.ops.tileflash.attention_forward(*forward_args)
    backward_args = (torch.randn_like(out), q, k, v, out, lse, bias, None, None, None, 0, 0, 0.25, -1, 0, 0.0, 0.1,
                     rng_state, False, "auto")
    torch.library.opcheck(torch.ops.tileflash.attention_backward.default, backward_args)
