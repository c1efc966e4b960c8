"""tileflash as an attention backend of Hugging Face transformers (5.x).

    import tileflash.integrations.transformers as tf_hf
    tf_hf.register()
    model = AutoModelForCausalLM.from_config(config, attn_implementation="tileflash")
    # or: model.set_attn_implementation("tileflash")

Two things are registered under the same name: the attention function and the
mask builder that transformers calls once per forward. For the plain causal mask
the builder returns no mask when nothing is padded (the kernel's own causal band
is used) and the 2-D padding mask otherwise, which the attention function turns
into a packed variable-length batch: padding costs neither memory nor FLOPs. Every
other mask pattern (sliding windows, chunked or packed-sequence masks, custom mask
functions) is built by transformers' SDPA mask builder as a 4-D boolean mask and
applied as an additive bias, so whatever the model asks for is what it gets.
"""

import torch

from .. import functional

NAME = "tileflash"


def _packed(mask_2d):
    """cu_seqlens (int32, batch + 1) and the longest length of a (batch, seq) bool padding mask."""
    lengths = mask_2d.sum(dim=-1, dtype=torch.int32)
    cu_seqlens = torch.nn.functional.pad(torch.cumsum(lengths, dim=0, dtype=torch.int32), (1, 0))
    return cu_seqlens, int(lengths.max()) if lengths.numel() else 0


def _varlen_attention(q, k, v, padding, causal, **options):
    """Attention over the valid tokens only. q, k, v are (batch, seq, heads, dim) views.

    Queries are the last seq_q positions of the keys (a prompt, or new tokens after a cache);
    with left padding or none, the bottom-right aligned causal band then matches each
    sequence's positions.
    """
    batch, seq_q = q.shape[0], q.shape[1]
    query_padding = padding[:, -seq_q:]
    cu_seqlens_k, max_seqlen_k = _packed(padding)
    if seq_q == padding.shape[1]:
        cu_seqlens_q, max_seqlen_q = cu_seqlens_k, max_seqlen_k
    else:
        cu_seqlens_q, max_seqlen_q = _packed(query_padding)
    packed = functional.attention(q[query_padding], k[padding], v[padding], causal=causal,
                                  cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                                  max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, **options)
    out = q.new_zeros(batch, seq_q, q.shape[2], q.shape[3])
    out[query_padding] = packed
    return out


def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, sliding_window=None,
                      softcap=None, is_causal=None, **kwargs):
    """transformers' attention-function protocol.

    query (batch, heads_q, seq_q, dim), key/value (batch, heads_kv, seq_k, dim); attention_mask is
    what :func:`mask` built: None, a (batch, seq_k) bool padding mask, or a 4-D mask. Returns
    (attn_output of shape (batch, seq_q, heads_q, dim), None): attention weights are never formed.
    """
    if kwargs.get("s_aux") is not None:
        raise ValueError("tileflash: s_aux: attention sinks are not supported by the tileflash backend")
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    options = {"dropout_p": dropout, "scale": scaling, "softcap": softcap or 0.0}
    q, k, v = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
    seq_q = q.shape[1]
    window = (sliding_window - 1, -1) if sliding_window else None

    if attention_mask is None:
        cu_seqlens_q, cu_seqlens_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
        if cu_seqlens_q is not None and cu_seqlens_k is not None and q.shape[0] == 1:
            # Several sequences packed into one row (transformers' flattening collator).
            out = functional.attention(q[0], k[0], v[0], causal=causal, window=window, cu_seqlens_q=cu_seqlens_q,
                                       cu_seqlens_k=cu_seqlens_k, max_seqlen_q=kwargs.get("max_length_q"),
                                       max_seqlen_k=kwargs.get("max_length_k"), **options)
            return out.unsqueeze(0), None
        out = functional.attention(q, k, v, causal=causal and seq_q > 1, window=window, **options)
    elif attention_mask.dim() == 2:
        out = _varlen_attention(q, k, v, attention_mask.to(torch.bool), causal and seq_q > 1, window=window,
                                **options)
    elif attention_mask.dim() == 4:
        # The mask already holds causality and any window, aligned as the model wants.
        out = functional.attention(q, k, v, bias=attention_mask, **options)
    else:
        raise ValueError(f"tileflash: attention_mask: expected None, a 2-D padding mask or a 4-D mask, "
                         f"got shape {tuple(attention_mask.shape)}")
    return out, None


def mask(*, batch_size, q_length, kv_length, mask_function, attention_mask=None, **kwargs):
    """transformers' mask-builder protocol (AttentionMaskInterface): see the module docstring."""
    from transformers.masking_utils import causal_mask_function, sdpa_mask

    if mask_function is causal_mask_function:
        if attention_mask is None:
            if q_length == kv_length:
                return None
        elif attention_mask.shape[-1] >= kv_length:
            padding = attention_mask[:, -kv_length:].to(torch.bool)
            if q_length == kv_length and bool(padding.all()):
                return None
            return padding
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, mask_function=mask_function,
                     attention_mask=attention_mask, **kwargs)


def _answer_flash_imports(name):
    """transformers takes every implementation whose name contains "flash" for a flash-attn
    flavour and, when a model is built or switched to it, imports that flavour's
    flash_attn_func / flash_attn_varlen_func (from a package or the kernels hub). For our
    name it gets tileflash's own functions, which have flash-attn 2.x signatures."""
    import transformers.modeling_flash_attention_utils as flash_utils

    imports = getattr(flash_utils, "_lazy_imports", None)
    if imports is None or getattr(imports, "tileflash_names", None) is not None:
        if imports is not None:
            imports.tileflash_names.add(name)
        return

    def lazy_imports(implementation, *args, **kwargs):
        if implementation in lazy_imports.tileflash_names:
            return (functional.flash_attn_func, functional.flash_attn_varlen_func, None, flash_utils._pad_input,
                    flash_utils._unpad_input)
        return imports(implementation, *args, **kwargs)

    lazy_imports.tileflash_names = {name}
    flash_utils._lazy_imports = lazy_imports


def register(name=NAME):
    """Make ``attn_implementation=name`` ("tileflash" by default) available to every transformers model."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, mask)
    if "flash" in name:
        _answer_flash_imports(name)
    return name


__all__ = ["NAME", "attention_forward", "mask", "register"]
