"""CUDA tensors: results against the float64 reference, launch on the caller's stream, models.

Every test here is marked `gpu` and skipped without a CUDA device (see conftest.py).
"""

import functools

import pytest

torch = pytest.importorskip("torch")

import tileflash  # noqa: E402
from conftest import (assert_close, dropout_keep_mask, plain_attention, plain_gradients, randn,  # noqa: E402
                      reference_attention)

pytestmark = pytest.mark.gpu

SHAPES = [(1, 1, 1, 1, 1, 64), (2, 37, 37, 4, 2, 64), (1, 577, 1000, 8, 1, 80), (2, 128, 77, 4, 4, 128),
          (1, 33, 257, 2, 2, 256)]
FEATURES = {
    "plain": {},
    "causal": {"causal": True},
    "window-softcap": {"window": (64, 7), "softcap": 20.0},
    "all": {"causal": True, "alibi": True, "bias": True},
}


@functools.cache
def head_dim_compiled(dim):
    """Whether this build has a CUDA tile for `dim` (TILEFLASH_HEAD_DIMS may be reduced)."""
    probe = torch.ones(1, 1, 1, dim, device="cuda", dtype=torch.bfloat16)
    try:
        tileflash.attention(probe, probe, probe)
    except ValueError as error:
        if "head-dim tile" in str(error):
            return False
        raise
    return True


def cuda_inputs(rng, shape, dtype, requires_grad=False):
    batch, seq_q, seq_k, heads_q, heads_kv, dim = shape
    if not head_dim_compiled(dim):
        pytest.skip(f"this build has no CUDA tile for head_dim {dim} (see TILEFLASH_HEAD_DIMS)")
    tensors = (randn(rng, batch, seq_q, heads_q, dim, dtype=dtype), randn(rng, batch, seq_k, heads_kv, dim, dtype=dtype),
               randn(rng, batch, seq_k, heads_kv, dim, dtype=dtype))
    return [t.cuda().requires_grad_(requires_grad) for t in tensors]


def features_for(name, rng, shape):
    batch, seq_q, seq_k, heads_q = shape[:4]
    features = dict(FEATURES[name])
    if features.pop("alibi", False):
        features["alibi_slopes"] = (torch.rand(heads_q, generator=rng) * 0.2).cuda()
    if features.pop("bias", False):
        features["bias"] = randn(rng, batch, 1, seq_q, seq_k).cuda()
    return features


def on_cpu(features):
    return {k: v.cpu() if torch.is_tensor(v) else v for k, v in features.items()}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("feature", list(FEATURES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cuda_forward_matches_reference(rng, shape, feature, dtype):
    q, k, v = cuda_inputs(rng, shape, dtype)
    features = features_for(feature, rng, shape)
    out, lse = tileflash.attention(q, k, v, return_lse=True, **features)
    assert out.is_cuda and out.dtype == dtype
    host = [t.cpu() for t in (q, k, v)]
    expected, expected_lse = reference_attention(*host, **on_cpu(features))
    plain, plain_lse = plain_attention(*host, **on_cpu(features))
    assert_close(out.cpu(), expected, plain, name="out")
    assert_close(lse.cpu(), expected_lse.float(), plain_lse, name="lse")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("feature", ["plain", "causal", "all"])
@pytest.mark.parametrize("shape", SHAPES[1:4], ids=lambda s: "x".join(map(str, s)))
def test_cuda_backward_matches_reference(rng, shape, feature, dtype):
    q, k, v = cuda_inputs(rng, shape, dtype, requires_grad=True)
    features = features_for(feature, rng, shape)
    out = tileflash.attention(q, k, v, **features)
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    host = [t.detach().cpu() for t in (q, k, v)]
    leaves = [t.double().requires_grad_() for t in host]
    expected = torch.autograd.grad(reference_attention(*leaves, **on_cpu(features))[0], leaves, dout.cpu().double())
    plain = plain_gradients(*host, dout.cpu(), **on_cpu(features))
    for name, grad, want, budget in zip(("dq", "dk", "dv"), grads, expected, plain):
        assert_close(grad.cpu(), want, budget, name=name)


def test_cuda_varlen_with_device_offsets(rng):
    lengths = [17, 0, 300, 1]
    cu = torch.tensor([0] + lengths, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    q = randn(rng, int(cu[-1]), 4, 64, dtype=torch.bfloat16)
    out = tileflash.attention(q.cuda(), q.cuda(), q.cuda(), cu_seqlens_q=cu.cuda(), cu_seqlens_k=cu.cuda(),
                              causal=True)
    expected = tileflash.attention(q.float(), q.float(), q.float(), cu_seqlens_q=cu, cu_seqlens_k=cu, causal=True)
    plain = tileflash.attention(q, q, q, cu_seqlens_q=cu, cu_seqlens_k=cu, causal=True)
    assert_close(out.cpu(), expected, plain)


def test_launches_on_the_current_stream_and_captures_in_a_cuda_graph(rng):
    q, k, v = cuda_inputs(rng, (2, 256, 256, 4, 4, 64), torch.bfloat16)
    expected = tileflash.attention(q, k, v, causal=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        on_side = tileflash.attention(q, k, v, causal=True)
    torch.cuda.current_stream().wait_stream(side)
    assert torch.equal(on_side, expected)
    # Capture fails if anything is launched on another stream than the capturing one.
    graph = torch.cuda.CUDAGraph()
    static_q = q.clone()
    with torch.cuda.graph(graph):
        captured = tileflash.attention(static_q, k, v, causal=True)
    static_q.copy_(q * 2)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, tileflash.attention(q * 2, k, v, causal=True))


def test_backward_captures_in_a_cuda_graph(rng):
    # Non-causal and small: the Hopper backward cuts every key block into query-range pieces,
    # run by a second grid that starts early (programmatic dependent launch). Both grids must
    # land in the captured graph, in order, and replay to the eager gradients (up to the
    # order of the fp32 additions, which is not fixed).
    q, k, v = cuda_inputs(rng, (2, 300, 200, 4, 2, 64), torch.bfloat16)
    dout = torch.randn(q.shape, generator=rng).to(device="cuda", dtype=torch.bfloat16)

    def gradients(q, k, v, dout):
        leaves = [t.detach().requires_grad_() for t in (q, k, v)]
        return torch.autograd.grad(tileflash.attention(*leaves), leaves, dout)

    static = [t.clone() for t in (q, k, v, dout)]
    gradients(*static)  # warm-up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = gradients(*static)
    static[0].copy_(q * 2)
    graph.replay()
    torch.cuda.synchronize()
    for name, got, want in zip(("dq", "dk", "dv"), captured, gradients(q * 2, k, v, dout)):
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2, msg=lambda m: f"{name}: {m}")


def test_cuda_dropout_draws_the_same_philox_stream(rng):
    q, k, v = cuda_inputs(rng, (2, 64, 96, 2, 2, 64), torch.float16)
    seed = int(torch.randint(0, 2**31, (1,), generator=rng))
    torch.manual_seed(seed)
    philox_seed, philox_offset = torch.randint(-(2**63), 2**63 - 1, (2,), dtype=torch.int64).tolist()
    keep = dropout_keep_mask(philox_seed, philox_offset, 0.2, 2, 2, 64, 96)
    torch.manual_seed(seed)
    out = tileflash.attention(q, k, v, dropout_p=0.2)
    host = [t.cpu() for t in (q, k, v)]
    expected, _ = reference_attention(*host, keep=keep, dropout_p=0.2)
    plain, _ = plain_attention(*host, keep=keep, dropout_p=0.2)
    assert_close(out.cpu(), expected, plain)


def test_compile_on_cuda(rng):
    torch._dynamo.reset()
    q, k, v = cuda_inputs(rng, (2, 128, 128, 4, 2, 64), torch.bfloat16, requires_grad=True)
    compiled = torch.compile(lambda q, k, v: tileflash.attention(q, k, v, causal=True).float().square().sum(),
                             fullgraph=True)
    loss = compiled(q, k, v)
    loss.backward()
    assert torch.isfinite(q.grad.float()).all()
    assert abs(loss.item() - tileflash.attention(q, k, v, causal=True).float().square().sum().item()) < 1e-2 * abs(
        loss.item())


def test_pythia_shaped_model_on_cuda_matches_sdpa(rng):
    transformers = pytest.importorskip("transformers")
    if not head_dim_compiled(80):
        pytest.skip("this build has no CUDA tile for head_dim 80 (see TILEFLASH_HEAD_DIMS)")
    import tileflash.integrations.transformers as tileflash_hf

    tileflash_hf.register()
    config = transformers.GPTNeoXConfig(hidden_size=640, intermediate_size=2560, num_hidden_layers=2,
                                        num_attention_heads=8, rotary_pct=0.25, vocab_size=1000)
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=rng)))
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="tileflash")
    model = model.to("cuda", torch.bfloat16).eval()
    input_ids = torch.randint(0, 1000, (3, 300), device="cuda")
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :100] = 0
    attention_mask[2, 250:] = 0
    valid = attention_mask.bool()
    with torch.no_grad():
        ours = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        model.set_attn_implementation("eager")
        eager = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        model.set_attn_implementation("sdpa")
        sdpa = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    # bf16 models differ from each other by rounding; tileflash may differ from eager no more than sdpa does.
    budget = 2 * (sdpa[valid] - eager[valid]).abs().max().item() + 1e-2
    assert (ours[valid] - eager[valid]).abs().max().item() <= budget
