"""The torch.library custom ops behind every torch entry point of tileflash.

``tileflash::attention_forward`` and ``tileflash::attention_backward`` are opaque
to torch.compile: each has a fake (meta) implementation that only allocates, so
the compiler traces through them without a graph break, and the forward has an
autograd formula (``register_autograd``) that calls the backward op.

Both ops take the problem fully resolved: the softmax scale is a number, causal
masking is folded into ``window_right = 0``, and dropout's Philox (seed, offset)
travel as one CPU int64 tensor ``rng_state`` drawn by the caller, so the forward
and its backward drop exactly the same entries.

FP8 (``torch.float8_e4m3fn``) inputs take the forward only: their per-tensor
descales are float32 one-element tensors and ``out_dtype`` (bfloat16 or float16)
is the output's dtype. They reach the library as uint8 views, since torch's DLPack
export has no FP8 code.
"""

import contextlib
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from . import _C

_UINT64_MASK = (1 << 64) - 1


def _lse_shape(q: Tensor, cu_seqlens_q: Optional[Tensor]) -> List[int]:
    if cu_seqlens_q is not None:
        return [q.shape[1], q.shape[0]]  # varlen: (heads_q, total_q)
    return [q.shape[0], q.shape[2], q.shape[1]]  # (batch, heads_q, seq_q)


def _options(
    q: Tensor,
    bias: Optional[Tensor],
    alibi_slopes: Optional[Tensor],
    cu_seqlens_q: Optional[Tensor],
    cu_seqlens_k: Optional[Tensor],
    max_seqlen_q: int,
    max_seqlen_k: int,
    softmax_scale: float,
    window_left: int,
    window_right: int,
    softcap: float,
    dropout_p: float,
    rng_state: Optional[Tensor],
    backend: str,
    descales: Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]] = (None, None, None),
) -> "_C.Options":
    options = _C.Options()
    options.q_descale, options.k_descale, options.v_descale = descales
    options.float8_inputs = q.dtype == torch.float8_e4m3fn
    options.bias = bias
    options.alibi_slopes = alibi_slopes
    options.cu_seqlens_q = cu_seqlens_q
    options.cu_seqlens_k = cu_seqlens_k
    options.max_seqlen_q = max_seqlen_q
    options.max_seqlen_k = max_seqlen_k
    options.softmax_scale = softmax_scale
    options.window_left = window_left
    options.window_right = window_right
    options.softcap = softcap
    options.dropout_p = dropout_p
    if rng_state is not None:
        seed, offset = rng_state.tolist()
        options.dropout_seed = seed & _UINT64_MASK
        options.dropout_offset = offset & _UINT64_MASK
    options.backend = backend
    if q.is_cuda:
        options.cuda_stream = torch.cuda.current_stream(q.device).cuda_stream
    return options


def _on_device(t: Tensor):
    """Launch on the tensors' GPU, not whichever one is current."""
    if t.is_cuda and t.device.index != torch.cuda.current_device():
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def _bytes(t: Tensor) -> Tensor:
    """FP8 tensors as the uint8 view the extension reads (options.float8_inputs)."""
    return t.view(torch.uint8) if t.dtype == torch.float8_e4m3fn else t


def _forward_outputs(q: Tensor, cu_seqlens_q: Optional[Tensor],
                     out_dtype: Optional[torch.dtype]) -> Tuple[Tensor, Tensor]:
    """Uninitialised (out, lse) of a forward: the real op and its fake allocate alike."""
    out = torch.empty(q.shape, dtype=q.dtype if out_dtype is None else out_dtype, device=q.device)
    lse = torch.empty(_lse_shape(q, cu_seqlens_q), dtype=torch.float32, device=q.device)
    return out, lse


def forward_impl(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Optional[Tensor],
    alibi_slopes: Optional[Tensor],
    cu_seqlens_q: Optional[Tensor],
    cu_seqlens_k: Optional[Tensor],
    max_seqlen_q: int,
    max_seqlen_k: int,
    softmax_scale: float,
    window_left: int,
    window_right: int,
    softcap: float,
    dropout_p: float,
    rng_state: Optional[Tensor],
    deterministic: bool,
    backend: str,
    q_descale: Optional[Tensor],
    k_descale: Optional[Tensor],
    v_descale: Optional[Tensor],
    out_dtype: Optional[torch.dtype],
) -> Tuple[Tensor, Tensor]:
    """Returns (out, lse). ``deterministic`` is only carried to the backward; ``out_dtype``
    None is q's dtype."""
    out, lse = _forward_outputs(q, cu_seqlens_q, out_dtype)
    options = _options(q, bias, alibi_slopes, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                       softmax_scale, window_left, window_right, softcap, dropout_p, rng_state, backend,
                       (q_descale, k_descale, v_descale))
    with _on_device(q):
        _C.forward(_bytes(q.detach()), _bytes(k.detach()), _bytes(v.detach()), out, lse, options)
    return out, lse


# The op wraps forward_impl; callers that need neither autograd nor tracing may call
# forward_impl directly and skip the dispatcher's per-call cost.
attention_forward = torch.library.custom_op("tileflash::attention_forward", mutates_args=(),
                                            device_types=("cpu", "cuda"))(forward_impl)


@attention_forward.register_fake
def _attention_forward_fake(q, k, v, bias, alibi_slopes, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                            softmax_scale, window_left, window_right, softcap, dropout_p, rng_state, deterministic,
                            backend, q_descale, k_descale, v_descale, out_dtype):
    return _forward_outputs(q, cu_seqlens_q, out_dtype)


@torch.library.custom_op("tileflash::attention_backward", mutates_args=(), device_types=("cpu", "cuda"))
def attention_backward(
    dout: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    bias: Optional[Tensor],
    alibi_slopes: Optional[Tensor],
    cu_seqlens_q: Optional[Tensor],
    cu_seqlens_k: Optional[Tensor],
    max_seqlen_q: int,
    max_seqlen_k: int,
    softmax_scale: float,
    window_left: int,
    window_right: int,
    softcap: float,
    dropout_p: float,
    rng_state: Optional[Tensor],
    deterministic: bool,
    backend: str,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Returns (dq, dk, dv); with GQA, dk and dv sum over each group's query heads."""
    if q.dtype == torch.float8_e4m3fn:
        # The library says the same; torch cannot hand FP8 gradients over DLPack to hear it.
        raise ValueError("tileflash: q: float8_e4m3fn inputs are supported by the forward only "
                         "(train in bfloat16 or float16)")
    # Autograd hands in broadcast gradients (e.g. of out.sum()), whose zero strides
    # the kernels cannot read along head_dim.
    if dout.stride(-1) != 1:
        dout = dout.contiguous()
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    options = _options(q, bias, alibi_slopes, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                       softmax_scale, window_left, window_right, softcap, dropout_p, rng_state, backend)
    with _on_device(q):
        _C.backward(dout.detach(), q.detach(), k.detach(), v.detach(), out.detach(), lse.detach(), dq, dk, dv,
                    deterministic, options)
    return dq, dk, dv


@attention_backward.register_fake
def _attention_backward_fake(dout, q, k, v, out, lse, bias, alibi_slopes, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                             max_seqlen_k, softmax_scale, window_left, window_right, softcap, dropout_p, rng_state,
                             deterministic, backend):
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    return dq, dk, dv


def _setup_context(ctx, inputs, output):
    (q, k, v, bias, alibi_slopes, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
     window_left, window_right, softcap, dropout_p, rng_state, deterministic, backend, *_fp8) = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, bias, alibi_slopes, cu_seqlens_q, cu_seqlens_k, rng_state)
    ctx.settings = (max_seqlen_q, max_seqlen_k, softmax_scale, window_left, window_right, softcap, dropout_p)
    ctx.deterministic = deterministic
    ctx.backend = backend
    # The log-sum-exp is an auxiliary output: no gradient flows back through it.
    ctx.mark_non_differentiable(lse)


def _backward(ctx, dout, _dlse):
    q, k, v, out, lse, bias, alibi_slopes, cu_seqlens_q, cu_seqlens_k, rng_state = ctx.saved_tensors
    (max_seqlen_q, max_seqlen_k, softmax_scale, window_left, window_right, softcap, dropout_p) = ctx.settings
    dq, dk, dv = attention_backward(dout, q, k, v, out, lse, bias, alibi_slopes, cu_seqlens_q, cu_seqlens_k,
                                    max_seqlen_q, max_seqlen_k, softmax_scale, window_left, window_right, softcap,
                                    dropout_p, rng_state, ctx.deterministic, ctx.backend)
    return (dq, dk, dv) + (None,) * 18


torch.library.register_autograd("tileflash::attention_forward", _backward, setup_context=_setup_context)
