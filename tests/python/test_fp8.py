"""FP8 (float8_e4m3fn) forward through the Python package: descales, output dtype, refusals.

On the CPU FP8 runs on the reference backend, so these run in CI; the GPU test compares the
Hopper kernel with it.
"""

import math

import pytest

torch = pytest.importorskip("torch")

import tileflash  # noqa: E402
from conftest import assert_close, randn, reference_attention  # noqa: E402

E4M3_MAX = 448.0


def quantise(t):
    """(t / s as float8_e4m3fn, s) with a per-tensor scale that maps max|t| to E4M3's largest value."""
    descale = t.abs().max().item() / E4M3_MAX
    return (t / descale).to(torch.float8_e4m3fn), descale


def fp8_inputs(rng, batch, seq_q, seq_k, heads_q, heads_kv, dim, device="cpu"):
    """FP8 q, k, v, their descales, and the values they stand for (float64)."""
    tensors, descales, values = [], [], []
    for seq, heads in ((seq_q, heads_q), (seq_k, heads_kv), (seq_k, heads_kv)):
        x8, descale = quantise(3.0 * randn(rng, batch, seq, heads, dim, dtype=torch.float64))
        tensors.append(x8.to(device))
        descales.append(descale)
        values.append(x8.double() * descale)
    return tensors, descales, values


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16])
def test_forward_matches_the_dequantised_reference(rng, causal, out_dtype):
    (q8, k8, v8), descales, values = fp8_inputs(rng, 2, 37, 45, 4, 2, 32)
    as_tensors = [torch.tensor([d], dtype=torch.float32) for d in descales]
    out, lse = tileflash.attention(q8, k8, v8, causal=causal, q_descale=as_tensors[0], k_descale=as_tensors[1],
                                   v_descale=as_tensors[2], out_dtype=out_dtype, return_lse=True)
    assert out.dtype == out_dtype and out.shape == q8.shape
    # The reference backend computes in float64 and rounds once: one ulp of the output dtype.
    expected, expected_lse = reference_attention(*values, causal=causal)
    assert_close(out, expected)
    assert_close(lse, expected_lse.float(), name="lse")


def test_descales_as_numbers_and_absent(rng):
    (q8, k8, v8), descales, values = fp8_inputs(rng, 1, 17, 17, 2, 2, 16)
    out = tileflash.attention(q8, k8, v8, q_descale=descales[0], k_descale=descales[1], v_descale=descales[2])
    assert out.dtype == torch.bfloat16
    assert_close(out, reference_attention(*values)[0])
    # Absent descales are 1: the inputs' own values.
    raw = [t.double() for t in (q8, k8, v8)]
    scale = 0.01  # keeps softmax of the raw (large) codes away from one-hot
    assert_close(tileflash.attention(q8, k8, v8, scale=scale), reference_attention(*raw, scale=scale)[0],
                 magnitude=E4M3_MAX)


def test_custom_op_traces_fp8(rng):
    (q8, k8, v8), descales, values = fp8_inputs(rng, 1, 19, 23, 2, 1, 16)
    q_descale, k_descale, v_descale = (torch.tensor([d], dtype=torch.float32) for d in descales)
    args = (q8, k8, v8, None, None, None, None, 0, 0, 1.0 / math.sqrt(16), -1, 0, 0.0, 0.0, None, False, "auto",
            q_descale, k_descale, v_descale, torch.float16)
    # Not test_schema: it runs arithmetic on the inputs, which torch has no CPU kernel for in FP8.
    torch.library.opcheck(torch.ops.tileflash.attention_forward.default, args,
                          test_utils=("test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"))

    def block(q, k, v, qd, kd, vd):
        return tileflash.attention(q, k, v, causal=True, q_descale=qd, k_descale=kd, v_descale=vd) * 2.0

    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    got = compiled(q8, k8, v8, q_descale, k_descale, v_descale)
    assert_close(got, 2.0 * reference_attention(*values, causal=True)[0])


def test_refusals_name_the_argument(rng):
    (q8, k8, v8), _, _ = fp8_inputs(rng, 1, 8, 8, 2, 2, 16)
    with pytest.raises(ValueError, match="out_dtype: must be torch.bfloat16 or torch.float16"):
        tileflash.attention(q8, k8, v8, out_dtype=torch.float32)
    with pytest.raises(TypeError, match="out_dtype: must be a torch.dtype"):
        tileflash.attention(q8, k8, v8, out_dtype="bfloat16")
    with pytest.raises(ValueError, match="q_descale"):
        tileflash.attention(q8, k8, v8, q_descale=torch.ones(2, dtype=torch.float32))
    with pytest.raises(ValueError, match="backend"):
        tileflash.attention(q8, k8, v8, backend="cpu")

    q16, k16, v16 = (randn(rng, 1, 8, 2, 16, dtype=torch.bfloat16) for _ in range(3))
    with pytest.raises(ValueError, match="q_descale"):
        tileflash.attention(q16, k16, v16, q_descale=0.5)
    with pytest.raises(ValueError, match="out_dtype: must be q's dtype"):
        tileflash.attention(q16, k16, v16, out_dtype=torch.float16)
    assert tileflash.attention(q16, k16, v16, out_dtype=torch.bfloat16).dtype == torch.bfloat16

    with pytest.raises(ValueError, match="forward only"):
        tileflash.attention(q8.requires_grad_(), k8, v8)
    with pytest.raises(ValueError, match="FP8 attention takes torch tensors"):
        tileflash.attention(q16.float().numpy(), k16.float().numpy(), v16.float().numpy(), v_descale=2.0)


@pytest.mark.gpu
@pytest.mark.parametrize("head_dim", [64, 128, 256])
def test_gpu_forward_matches_the_reference_backend(rng, head_dim):
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the FP8 kernel is Hopper's (sm_90)")
    (q8, k8, v8), descales, values = fp8_inputs(rng, 2, 577, 601, 4, 2, head_dim, device="cuda")
    q_descale, k_descale, v_descale = (torch.tensor([d], dtype=torch.float32, device="cuda") for d in descales)
    out = tileflash.attention(q8, k8, v8, causal=True, q_descale=q_descale, k_descale=k_descale,
                              v_descale=v_descale)
    expected = reference_attention(*values, causal=True)[0]
    # P rounded to e4m3 before P V: the same precision in a plain float32 formula is the budget.
    plain = reference_attention(*values, causal=True, compute_dtype=torch.float32,
                                round_probs_to=torch.float8_e4m3fn)[0]
    assert_close(out.cpu(), expected, plain)
