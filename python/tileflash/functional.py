"""The public attention functions.

Layouts: :func:`attention` and the ``flash_attn_*`` functions take flash-attn's
(batch, seq, heads, head_dim), or (total, heads, head_dim) with ``cu_seqlens``
for packed variable-length batches; :func:`scaled_dot_product_attention` takes
PyTorch's (batch, heads, seq, head_dim) and passes transposed views, never copies.

Semantics (every backend, see docs/design.md): logits are scaled, soft-capped,
biased, then ALiBi is added; masks (causal, sliding window) are aligned to the
bottom-right corner of the score matrix when seq_q != seq_k, as in flash-attn >= 2.1.
A query row that may attend to nothing gets output 0 and log-sum-exp -inf.

torch tensors (CPU or CUDA) go through the ``tileflash::attention_forward``
custom op, so they support autograd and ``torch.compile(fullgraph=True)``.
numpy arrays run the forward directly and return numpy arrays.
"""

import math
from numbers import Integral, Real

import numpy as np

from . import _C

try:
    import torch
except ImportError:  # numpy-only installs: attention() on numpy arrays still works
    torch = None
else:
    from . import _ops

_BACKENDS = ("auto", "reference", "cpu", "cuda")


def _error(argument, rule):
    return ValueError(f"tileflash: {argument}: {rule}")


def _type_error(argument, rule):
    return TypeError(f"tileflash: {argument}: {rule}")


def _resolve_window(window, causal):
    """(window_left, window_right) with -1 for an unbounded side; causal is window_right = 0."""
    if window is None:
        left, right = -1, -1
    else:
        if not isinstance(window, (tuple, list)) or len(window) != 2:
            raise _error("window", f"must be a (left, right) pair of ints (-1 = unbounded), got {window!r}")
        left, right = (-1 if side is None else side for side in window)
        if not all(isinstance(side, Integral) and not isinstance(side, bool) for side in (left, right)):
            raise _type_error("window", f"sides must be ints (-1 = unbounded), got {window!r}")
        left, right = int(left), int(right)
        for name, side in (("window_left", left), ("window_right", right)):
            if side < -1:
                raise _error(name, f"must be -1 (unbounded) or non-negative, got {side}")
    if causal:
        right = 0
    return left, right


def _check_number(argument, value):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise _type_error(argument, f"must be a number, got {type(value).__name__}")
    return float(value)


def _check_backend(backend):
    if backend not in _BACKENDS:
        raise _error("backend", f"must be one of {', '.join(repr(b) for b in _BACKENDS)}, got {backend!r}")


def _torch_bias(bias, q, seq_q, seq_k):
    """An additive float bias of rank 4, broadcast (zero strides, no copy) to (.., .., seq_q, seq_k)."""
    if not isinstance(bias, torch.Tensor):
        raise _type_error("bias", f"must be a torch.Tensor, got {type(bias).__name__}")
    if bias.requires_grad and torch.is_grad_enabled():
        raise _error("bias", "gradients with respect to the bias are not computed; pass bias.detach()")
    if bias.dtype == torch.bool:
        mask_dtype = torch.float32 if q.dtype == torch.float8_e4m3fn else q.dtype
        bias = torch.zeros(bias.shape, dtype=mask_dtype, device=bias.device).masked_fill_(~bias, -math.inf)
    elif not bias.is_floating_point():
        raise _type_error("bias", f"must be a floating-point or bool tensor, got {bias.dtype}")
    elif bias.dtype not in (torch.float32, q.dtype):
        bias = bias.to(torch.float32)
    if bias.dim() > 4:
        raise _error("bias", f"must have at most 4 dimensions (batch, heads, seq_q, seq_k), got {bias.dim()}")
    bias = bias.reshape((1,) * (4 - bias.dim()) + tuple(bias.shape))
    target = list(bias.shape)
    for dim, size in ((2, seq_q), (3, seq_k)):
        if target[dim] == 1:
            target[dim] = size
    return bias.expand(target)


def _torch_seqlens(argument, cu_seqlens):
    if not isinstance(cu_seqlens, torch.Tensor):
        raise _type_error(argument, f"must be a torch.Tensor, got {type(cu_seqlens).__name__}")
    if cu_seqlens.dtype != torch.int32:
        if cu_seqlens.is_floating_point() or cu_seqlens.dtype == torch.bool:
            raise _type_error(argument, f"must be an integer tensor (int32), got {cu_seqlens.dtype}")
        cu_seqlens = cu_seqlens.to(torch.int32)
    return cu_seqlens.contiguous()


def _max_seqlen(argument, given, cu_seqlens):
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, Integral):
            raise _type_error(argument, f"must be an int, got {type(given).__name__}")
        return int(given)
    if cu_seqlens is None or not cu_seqlens.is_cuda:
        return 0  # the library derives it from host-resident offsets
    # Device-resident offsets: one synchronising read; pass max_seqlen_* to avoid it.
    return int((cu_seqlens[1:] - cu_seqlens[:-1]).max()) if cu_seqlens.numel() > 1 else 0


def _head_dim_contiguous(t):
    return t if t.stride(-1) == 1 or t.shape[-1] <= 1 else t.contiguous()


def attention(q, k, v, *, causal=False, window=None, bias=None, dropout_p=0.0, softcap=0.0, scale=None,
              cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None, deterministic=False,
              return_lse=False, alibi_slopes=None, backend="auto", q_descale=None, k_descale=None, v_descale=None,
              out_dtype=None):
    """Exact attention softmax(q k^T * scale + bias) v, with flash-attn's layout.

    Args:
        q: (batch, seq_q, heads_q, head_dim), or (total_q, heads_q, head_dim) with cu_seqlens_q.
        k, v: (batch, seq_k, heads_kv, head_dim) or (total_k, heads_kv, head_dim); heads_q must be
            a multiple of heads_kv (GQA/MQA). Any strides with a contiguous head_dim are read in place.
        causal: mask j > i + seq_k - seq_q (bottom-right aligned).
        window: (left, right) sliding window, -1 or None for an unbounded side.
        bias: additive bias, broadcastable to (batch, heads_q, seq_q, seq_k) (for varlen, to
            (batch, heads_q, max_seqlen_q, max_seqlen_k) with sequence-local indices); a bool
            tensor is a mask (True = attend). No gradient is computed for it.
        dropout_p: dropout on the attention probabilities. The Philox seed comes from torch's
            default generator (``torch.manual_seed`` makes runs repeatable); the backward reuses it.
        softcap: if > 0, logits become softcap * tanh(logits / softcap).
        scale: softmax scale, default 1 / sqrt(head_dim).
        cu_seqlens_q, cu_seqlens_k: (batch + 1) int32 offsets of a packed batch.
        max_seqlen_q, max_seqlen_k: longest sequence; derived when omitted (a device sync for CUDA offsets).
        deterministic: bitwise-reproducible gradients.
        return_lse: also return the float32 natural-log log-sum-exp, (batch, heads_q, seq_q) or
            (heads_q, total_q); it carries no gradient.
        alibi_slopes: float32 (heads_q) or (batch, heads_q); adds -slope * |i + seq_k - seq_q - j|.
        backend: "auto" (the tensors' device), "cpu" (tiled), "reference" (materialised, fp64
            accumulation; the only one for float64 and, on the CPU, for FP8), or "cuda".
        q_descale, k_descale, v_descale: FP8 (torch.float8_e4m3fn) inputs only, forward only: the
            per-tensor factors that undo their quantisation (a number, or a float32 tensor of one
            element on q's device); the logits use scale * q_descale * k_descale and the output
            is multiplied by v_descale. Absent means 1. FP8 runs on Hopper GPUs (without softcap,
            bias, ALiBi or dropout) and, on the CPU, on the reference backend.
        out_dtype: the output's dtype: q's (the default), or for FP8 inputs torch.bfloat16 (the
            default) or torch.float16.

    Returns:
        out with the shape of q and the dtype of q (or out_dtype), or (out, lse) when return_lse.
    """
    window_left, window_right = _resolve_window(window, causal)
    dropout_p = _check_number("dropout_p", dropout_p)
    softcap = _check_number("softcap", softcap)
    _check_backend(backend)
    if torch is not None and all(isinstance(t, torch.Tensor) for t in (q, k, v)):
        fp8 = _torch_fp8_settings(q, k, v, (q_descale, k_descale, v_descale), out_dtype)
        return _torch_attention(q, k, v, window_left, window_right, bias, dropout_p, softcap, scale, cu_seqlens_q,
                                cu_seqlens_k, max_seqlen_q, max_seqlen_k, bool(deterministic), return_lse,
                                alibi_slopes, backend, fp8)
    if all(isinstance(t, np.ndarray) for t in (q, k, v)):
        for name, given in (("q_descale", q_descale), ("k_descale", k_descale), ("v_descale", v_descale),
                            ("out_dtype", out_dtype)):
            if given is not None:
                raise _error(name, "FP8 attention takes torch tensors (numpy has no float8_e4m3fn)")
        return _numpy_attention(q, k, v, window_left, window_right, bias, dropout_p, softcap, scale, cu_seqlens_q,
                                cu_seqlens_k, max_seqlen_q, max_seqlen_k, return_lse, alibi_slopes, backend)
    kinds = ", ".join(type(t).__module__ + "." + type(t).__name__ for t in (q, k, v))
    raise _type_error("q", f"q, k and v must all be torch tensors or all numpy arrays, got {kinds}")


def _torch_fp8_settings(q, k, v, descales, out_dtype):
    """(q_descale, k_descale, v_descale, out_dtype) as the forward op takes them."""
    fp8 = q.dtype == torch.float8_e4m3fn
    if out_dtype is not None:
        if not isinstance(out_dtype, torch.dtype):
            raise _type_error("out_dtype", f"must be a torch.dtype, got {type(out_dtype).__name__}")
        if fp8 and out_dtype not in (torch.bfloat16, torch.float16):
            raise _error("out_dtype", f"must be torch.bfloat16 or torch.float16 for float8_e4m3fn inputs, got {out_dtype}")
        if not fp8 and out_dtype != q.dtype:
            raise _error("out_dtype", f"must be q's dtype ({q.dtype}): only float8_e4m3fn inputs take another, "
                                      f"got {out_dtype}")
    if fp8:
        out_dtype = torch.bfloat16 if out_dtype is None else out_dtype
        if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
            raise _error("q", "float8_e4m3fn inputs are supported by the forward only (train in bfloat16 or "
                              "float16); pass detached tensors")
    else:
        out_dtype = None

    def as_tensor(name, descale):
        if descale is None or isinstance(descale, torch.Tensor):
            return None if descale is None else descale.detach()
        return torch.full((1,), _check_number(name, descale), dtype=torch.float32, device=q.device)

    names = ("q_descale", "k_descale", "v_descale")
    return tuple(as_tensor(name, d) for name, d in zip(names, descales)) + (out_dtype,)


def _resolve_scale(scale, head_dim):
    if scale is None:
        return 1.0 / math.sqrt(head_dim)
    return _check_number("scale", scale)


def _torch_attention(q, k, v, window_left, window_right, bias, dropout_p, softcap, scale, cu_seqlens_q, cu_seqlens_k,
                     max_seqlen_q, max_seqlen_k, deterministic, return_lse, alibi_slopes, backend, fp8):
    if q.dim() not in (3, 4) or q.dim() != k.dim() or q.dim() != v.dim():
        raise _error("q", "q, k and v must all have rank 4 (batch, seq, heads, head_dim), or rank 3 "
                          f"(total, heads, head_dim) with cu_seqlens; got {q.dim()}, {k.dim()}, {v.dim()}")
    q, k, v = (_head_dim_contiguous(t) for t in (q, k, v))
    varlen = cu_seqlens_q is not None or cu_seqlens_k is not None
    if varlen:
        if cu_seqlens_q is None or cu_seqlens_k is None:
            raise _error("cu_seqlens_q" if cu_seqlens_q is None else "cu_seqlens_k",
                         "cu_seqlens_q and cu_seqlens_k must be given together")
        cu_seqlens_q = _torch_seqlens("cu_seqlens_q", cu_seqlens_q)
        cu_seqlens_k = _torch_seqlens("cu_seqlens_k", cu_seqlens_k)
    max_seqlen_q = _max_seqlen("max_seqlen_q", max_seqlen_q, cu_seqlens_q)
    max_seqlen_k = _max_seqlen("max_seqlen_k", max_seqlen_k, cu_seqlens_k)
    if bias is not None:
        if varlen and (max_seqlen_q == 0 or max_seqlen_k == 0):
            max_seqlen_q = max_seqlen_q or int((cu_seqlens_q[1:] - cu_seqlens_q[:-1]).max())
            max_seqlen_k = max_seqlen_k or int((cu_seqlens_k[1:] - cu_seqlens_k[:-1]).max())
        seq_q, seq_k = (max_seqlen_q, max_seqlen_k) if varlen else (q.shape[1], k.shape[1])
        bias = _torch_bias(bias, q, seq_q, seq_k)
    if alibi_slopes is not None:
        if not isinstance(alibi_slopes, torch.Tensor):
            raise _type_error("alibi_slopes", f"must be a torch.Tensor, got {type(alibi_slopes).__name__}")
        alibi_slopes = alibi_slopes.detach().to(torch.float32).contiguous()
    rng_state = None
    if dropout_p > 0.0:
        # Drawn on the CPU so that no device sync is needed to read it back.
        rng_state = torch.randint(-(2**63), 2**63 - 1, (2,), dtype=torch.int64)
    needs_graph = torch.compiler.is_compiling() or (
        torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad))
    # Inference outside torch.compile skips the custom op's dispatch (tens of microseconds a call).
    forward = _ops.attention_forward if needs_graph else _ops.forward_impl
    out, lse = forward(q, k, v, bias, alibi_slopes, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                       _resolve_scale(scale, q.shape[-1]), window_left, window_right, softcap, dropout_p, rng_state,
                       deterministic, backend, *fp8)
    return (out, lse) if return_lse else out


def _numpy_attention(q, k, v, window_left, window_right, bias, dropout_p, softcap, scale, cu_seqlens_q, cu_seqlens_k,
                     max_seqlen_q, max_seqlen_k, return_lse, alibi_slopes, backend):
    varlen = cu_seqlens_q is not None
    options = _C.Options()
    if cu_seqlens_q is not None or cu_seqlens_k is not None:
        options.cu_seqlens_q = None if cu_seqlens_q is None else np.ascontiguousarray(cu_seqlens_q, dtype=np.int32)
        options.cu_seqlens_k = None if cu_seqlens_k is None else np.ascontiguousarray(cu_seqlens_k, dtype=np.int32)
    options.max_seqlen_q = _max_seqlen("max_seqlen_q", max_seqlen_q, None)
    options.max_seqlen_k = _max_seqlen("max_seqlen_k", max_seqlen_k, None)
    options.softmax_scale = _resolve_scale(scale, q.shape[-1])
    options.window_left, options.window_right = window_left, window_right
    options.softcap = softcap
    if bias is not None:
        bias = np.asarray(bias)
        if bias.dtype == np.bool_:
            bias = np.where(bias, 0.0, -np.inf).astype(q.dtype)
        if bias.ndim > 4:
            raise _error("bias", f"must have at most 4 dimensions (batch, heads, seq_q, seq_k), got {bias.ndim}")
        bias = bias.reshape((1,) * (4 - bias.ndim) + bias.shape)
        if varlen:
            seq_q = options.max_seqlen_q or int(np.diff(options.cu_seqlens_q).max())
            seq_k = options.max_seqlen_k or int(np.diff(options.cu_seqlens_k).max())
        else:
            seq_q, seq_k = q.shape[1], k.shape[1]
        target = list(bias.shape)
        target[2] = seq_q if target[2] == 1 else target[2]
        target[3] = seq_k if target[3] == 1 else target[3]
        options.bias = np.broadcast_to(bias, target)
    if alibi_slopes is not None:
        options.alibi_slopes = np.ascontiguousarray(alibi_slopes, dtype=np.float32)
    options.dropout_p = dropout_p
    if dropout_p > 0.0:
        options.dropout_seed, options.dropout_offset = (int(x) for x in np.random.randint(0, 2**63, 2, np.int64))
    options.backend = backend
    out = np.empty(q.shape, dtype=q.dtype)
    lse = np.empty((q.shape[1], q.shape[0]) if varlen else (q.shape[0], q.shape[2], q.shape[1]), dtype=np.float32)
    _C.forward(q, k, v, out, lse, options)
    return (out, lse) if return_lse else out


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """A drop-in for ``torch.nn.functional.scaled_dot_product_attention`` on (batch, heads, seq, head_dim).

    Follows PyTorch's conventions where they differ from :func:`attention`: ``is_causal`` is
    aligned to the top-left corner (query i sees keys j <= i), a bool ``attn_mask`` marks the
    entries that take part, ``attn_mask`` and ``is_causal`` are exclusive, and heads_q != heads_kv
    needs ``enable_gqa=True``. Unlike PyTorch, a fully masked row gives 0, not NaN. Inputs of rank 3
    (heads, seq, head_dim) are accepted too. Returns (batch, heads, seq_q, head_dim).
    """
    if torch is None or not all(isinstance(t, torch.Tensor) for t in (query, key, value)):
        raise _type_error("query", "query, key and value must be torch tensors")
    if not (query.dim() == key.dim() == value.dim() and query.dim() in (3, 4)):
        raise _error("query", "query, key and value must all have rank 4 (batch, heads, seq, head_dim) or 3 "
                              f"(heads, seq, head_dim); got {query.dim()}, {key.dim()}, {value.dim()}")
    if attn_mask is not None and is_causal:
        raise _error("attn_mask", "must be None when is_causal=True (as in torch's scaled_dot_product_attention)")
    unbatched = query.dim() == 3
    if unbatched:
        query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
    if query.shape[1] != key.shape[1] and not enable_gqa:
        raise _error("key", f"has {key.shape[1]} heads but query has {query.shape[1]}; pass enable_gqa=True for "
                            "grouped-query attention")
    seq_q, seq_k = query.shape[2], key.shape[2]
    window = None
    if is_causal:
        if seq_q >= seq_k:
            # Top-left causal is the bottom-right band shifted right by seq_q - seq_k.
            window = (-1, seq_q - seq_k)
        else:
            attn_mask = torch.ones(seq_q, seq_k, dtype=torch.bool, device=query.device).tril()
    out = attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), window=window,
                    bias=attn_mask, dropout_p=dropout_p, scale=scale)
    out = out.transpose(1, 2)
    return out.squeeze(0) if unbatched else out


def _flash_window(window_size):
    if not isinstance(window_size, (tuple, list)) or len(window_size) != 2:
        raise _error("window_size", f"must be a (left, right) pair, -1 = unbounded, got {window_size!r}")
    return tuple(window_size)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash-attn 2.x ``flash_attn_func``: q (batch, seq_q, heads_q, d), k/v (batch, seq_k, heads_kv, d).

    Returns out, or (out, softmax_lse, None) when return_attn_probs: the attention probabilities
    are never materialised (that is the point), so the third entry is always None.
    """
    out, lse = attention(q, k, v, causal=causal, window=_flash_window(window_size), dropout_p=dropout_p,
                         softcap=softcap, scale=softmax_scale, alibi_slopes=alibi_slopes,
                         deterministic=deterministic, return_lse=True)
    return (out, lse, None) if return_attn_probs else out


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, block_table=None):
    """flash-attn 2.x ``flash_attn_varlen_func``: q (total_q, heads_q, d), k/v (total_k, heads_kv, d).

    softmax_lse is (heads_q, total_q). A paged KV cache (block_table) is not supported.
    Returns out, or (out, softmax_lse, None) when return_attn_probs.
    """
    if block_table is not None:
        raise _error("block_table", "a paged KV cache is not supported by tileflash's varlen attention")
    out, lse = attention(q, k, v, causal=causal, window=_flash_window(window_size), dropout_p=dropout_p,
                         softcap=softcap, scale=softmax_scale, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                         max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, alibi_slopes=alibi_slopes,
                         deterministic=deterministic, return_lse=True)
    return (out, lse, None) if return_attn_probs else out


def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                              softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash-attn 2.x ``flash_attn_qkvpacked_func``: qkv (batch, seq, 3, heads, d), read in place."""
    if not isinstance(qkv, torch.Tensor) or qkv.dim() != 5 or qkv.shape[2] != 3:
        raise _error("qkv", "must be a torch tensor of shape (batch, seq, 3, heads, head_dim)")
    q, k, v = qkv.unbind(2)
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes,
                           deterministic, return_attn_probs)


def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                             softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash-attn 2.x ``flash_attn_kvpacked_func``: kv (batch, seq_k, 2, heads_kv, d), read in place."""
    if not isinstance(kv, torch.Tensor) or kv.dim() != 5 or kv.shape[2] != 2:
        raise _error("kv", "must be a torch tensor of shape (batch, seq_k, 2, heads_kv, head_dim)")
    k, v = kv.unbind(2)
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes,
                           deterministic, return_attn_probs)
