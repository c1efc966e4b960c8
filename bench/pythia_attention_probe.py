"""Attention alone at Pythia-2.8B's shape: batch 1, 32 heads, head dim 80, causal, bf16,
(batch, heads, seq, dim) tensors. PyTorch SDPA under each backend and under its default
choice, against tileflash's SDPA-shaped entry point; median of 20 CUDA-event timings.
It explains the model-level prefill comparison (bench/model_prefill.py): transformers'
`sdpa` runs whatever SDPA picks by default. Needs a CUDA GPU and tileflash built with CUDA.
Prints one line per sequence length."""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import tileflash


def median_ms(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main():
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION}
    for seq in (4096, 16384, 32768):
        q, k, v = (torch.randn(1, 32, seq, 80, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4 * 32 * seq * seq * 80 / 2
        times = {}
        with torch.no_grad():
            for name, backend in backends.items():
                try:
                    with sdpa_kernel([backend]):
                        times[name] = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
                except RuntimeError:
                    times[name] = float("nan")
            times["default"] = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            times["tileflash"] = median_ms(lambda: tileflash.scaled_dot_product_attention(q, k, v, is_causal=True))
        print(seq, " ".join(f"{n}={t:.2f}ms({flops / t / 1e9:.0f}TF)" for n, t in times.items()), flush=True)


if __name__ == "__main__":
    main()
