"""Times PyTorch SDPA (flash backend, i.e. FlashAttention-2) on the grid of
shared/ANCHORS.md, like scripts/forward_timing.cpp, and prints the ratio table
against tileflash's CSV given as argv[1]. Run by scripts/device_check_forward.sh."""
import csv
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

TOKENS, HIDDEN = 16384, 2048


def time_ms(fn, reps=20):
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]


def main():
    ours = {}
    with open(sys.argv[1]) as f:
        for row in csv.DictReader(f):
            ours[(int(row["d"]), int(row["causal"]), int(row["seq"]))] = float(row["tflops"])
    print("d,causal,seq,tileflash_tflops,sdpa_flash_tflops,sdpa_cudnn_tflops,ratio_flash,ratio_cudnn")
    for d, causal, seq in sorted(ours):
        batch, heads = TOKENS // seq, HIDDEN // d
        q, k, v = (torch.randn(batch, heads, seq, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = 4.0 * batch * heads * seq * seq * d / (2.0 if causal else 1.0)
        rates = []
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION):
            with sdpa_kernel(backend):
                ms = time_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=bool(causal)))
            rates.append(flops / ms / 1e9)
        mine = ours[(d, causal, seq)]
        print(f"{d},{causal},{seq},{mine:.1f},{rates[0]:.1f},{rates[1]:.1f},{mine / rates[0]:.3f},{mine / rates[1]:.3f}",
              flush=True)


if __name__ == "__main__":
    main()
