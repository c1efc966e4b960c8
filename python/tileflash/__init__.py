"""tileflash: exact, IO-aware attention (FlashAttention) for CPUs and NVIDIA GPUs.

Entry points:
    attention                      flash-attn layout (batch, seq, heads, dim), every feature
    scaled_dot_product_attention   torch's SDPA signature, (batch, heads, seq, dim)
    flash_attn_func, flash_attn_varlen_func, flash_attn_qkvpacked_func, flash_attn_kvpacked_func
                                   flash-attn 2.x signatures, for a change of import
    integrations.transformers.register()
                                   attn_implementation="tileflash" in Hugging Face transformers
"""

from ._C import __version__, cuda_available, cuda_device_count
from .functional import (
    attention,
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    scaled_dot_product_attention,
)

__all__ = [
    "__version__",
    "attention",
    "cuda_available",
    "cuda_device_count",
    "flash_attn_func",
    "flash_attn_kvpacked_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_varlen_func",
    "scaled_dot_product_attention",
]
