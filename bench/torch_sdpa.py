#!/usr/bin/env python3
"""PyTorch scaled_dot_product_attention, timed the way tileflash-bench times tileflash.

Backends: torch-cpu (SDPA on CPU tensors, PyTorch's choice of kernel), and on the GPU
one SDPA backend at a time: sdpa-flash (FlashAttention-2), sdpa-cudnn, sdpa-efficient
(memory-efficient), sdpa-math (materialised). Same options, FLOP count and CSV columns
as tileflash-bench, so the two CSVs concatenate:

  backend,kernel,device,dtype,batch,heads_q,heads_kv,seq_q,seq_k,head_dim,causal,
  direction,ms_median,tflops,peak_bytes

GPU timing: median over --reps of CUDA-event times, each repetition preceded by a write
of a buffer twice the L2 size. CPU timing: median of wall-clock times.
peak_bytes: on the GPU, the CUDA caching allocator's high-water mark during one run
minus what was allocated before, minus the outputs themselves (out; dq, dk, dv): saved
tensors, workspaces and, for sdpa-math, the materialised scores. Not measured on the
CPU (written as -1).

Causal masks are aligned to the bottom-right corner (flash-attn >= 2.1, tileflash):
is_causal for seq_q == seq_k, torch.nn.attention.bias.causal_lower_right otherwise.
"""
import argparse
import contextlib
import csv
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

COLUMNS = ("backend,kernel,device,dtype,batch,heads_q,heads_kv,seq_q,seq_k,head_dim,causal,direction,"
           "ms_median,tflops,peak_bytes").split(",")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "bf16": 4e-2}
GPU_BACKENDS = {
    "sdpa-flash": ("FLASH_ATTENTION", "flash"),
    "sdpa-cudnn": ("CUDNN_ATTENTION", "cudnn"),
    "sdpa-efficient": ("EFFICIENT_ATTENTION", "efficient"),
    "sdpa-math": ("MATH", "math"),
}


def int_list(text):
    values = [int(x) for x in text.split(",") if x]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expects positive integers")
    return values


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sdpa-flash")
    p.add_argument("--seq", type=int_list, default=[1024])
    p.add_argument("--seq-k", type=int_list, default=None)
    p.add_argument("--head-dim", type=int_list, default=[64])
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--heads-kv", type=int, default=0)
    p.add_argument("--hidden", type=int, default=0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--tokens", type=int, default=0)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--causal", choices=["0", "1", "both"], default="0")
    p.add_argument("--direction", default="fwd")
    p.add_argument("--layout", choices=["bshd", "bhsd"], default="bshd")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--check", type=int, choices=[0, 1], default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--csv", default="")
    args = p.parse_args()
    if args.seq_k and len(args.seq_k) not in (1, len(args.seq)):
        p.error("--seq-k needs one value or as many as --seq")
    for d in args.dtype.split(","):
        if d not in DTYPES:
            p.error(f"--dtype expects fp32, fp16 or bf16, got {d}")
    for d in args.direction.split(","):
        if d not in ("fwd", "bwd", "fwd+bwd"):
            p.error(f"--direction expects fwd, bwd or fwd+bwd, got {d}")
    for b in args.backends.split(","):
        if b != "torch-cpu" and b not in GPU_BACKENDS:
            p.error(f"unknown backend {b} (torch-cpu, {', '.join(GPU_BACKENDS)})")
    return args


def cases(args):
    causal = {"0": [False], "1": [True], "both": [False, True]}[args.causal]
    for dtype in args.dtype.split(","):
        for d in args.head_dim:
            for c in causal:
                for i, sq in enumerate(args.seq):
                    sk = args.seq_k[0 if len(args.seq_k) == 1 else i] if args.seq_k else sq
                    for direction in args.direction.split(","):
                        hq = max(1, args.hidden // d) if args.hidden else args.heads
                        yield dict(dtype=dtype, batch=max(1, args.tokens // sq) if args.tokens else args.batch,
                                   heads_q=hq, heads_kv=args.heads_kv or hq, seq_q=sq, seq_k=sk, head_dim=d,
                                   causal=c, direction=direction)


def attended_pairs(c):
    sq, sk = c["seq_q"], c["seq_k"]
    if not c["causal"]:
        return sq * sk
    if sq == sk:
        return sq * sk / 2
    return sum(min(max(i + sk - sq + 1, 0), sk) for i in range(sq))


def case_flops(c):
    forward = 4.0 * c["batch"] * c["heads_q"] * attended_pairs(c) * c["head_dim"]
    return forward * {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}[c["direction"]]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"


def make_inputs(c, layout, device, seed):
    """q, k, v, dout as (batch, heads, seq, dim) views; bshd storage is transposed, not copied."""
    gen = torch.Generator(device=device).manual_seed(seed)
    dtype = DTYPES[c["dtype"]]

    def tensor(seq, heads):
        shape = (c["batch"], seq, heads, c["head_dim"]) if layout == "bshd" else (c["batch"], heads, seq, c["head_dim"])
        t = torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(dtype)
        return t.transpose(1, 2) if layout == "bshd" else t

    q = tensor(c["seq_q"], c["heads_q"])
    k = tensor(c["seq_k"], c["heads_kv"])
    v = tensor(c["seq_k"], c["heads_kv"])
    dout = tensor(c["seq_q"], c["heads_q"])
    return q, k, v, dout


def attention_call(c):
    from torch.nn.attention.bias import causal_lower_right

    kwargs = {}
    if c["heads_q"] != c["heads_kv"]:
        kwargs["enable_gqa"] = True
    if c["causal"]:
        if c["seq_q"] == c["seq_k"]:
            kwargs["is_causal"] = True
        else:
            kwargs["attn_mask"] = causal_lower_right(c["seq_q"], c["seq_k"])
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kwargs)


class Timer:
    def __init__(self, device):
        self.device = device
        if device == "cuda":
            l2 = torch.cuda.get_device_properties(0).L2_cache_size
            self.flush = torch.empty(2 * max(l2, 1 << 20), dtype=torch.uint8, device="cuda")

    def time(self, operation, reps, warmup):
        if self.device == "cpu":
            for _ in range(warmup):
                operation()
            times = []
            for _ in range(max(reps, 1)):
                start = time.perf_counter()
                operation()
                times.append((time.perf_counter() - start) * 1e3)
            return times
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(max(reps, 1))]
        for i in range(warmup + len(events)):
            self.flush.fill_(i & 0xFF)
            if i >= warmup:
                events[i - warmup][0].record()
            operation()
            if i >= warmup:
                events[i - warmup][1].record()
        torch.cuda.synchronize()
        return [start.elapsed_time(stop) for start, stop in events]


def run_case(backend, c, inputs, timer, args):
    """Returns (kernel, ms_median, peak_bytes, outputs) for one backend and case."""
    device = "cpu" if backend == "torch-cpu" else "cuda"
    q, k, v = (t.detach().requires_grad_() for t in inputs[:3])
    dout = inputs[3]
    attend = attention_call(c)
    direction = c["direction"]
    state = {}

    def forward():
        state["out"] = attend(q, k, v)

    def backward():
        state["grads"] = torch.autograd.grad(state["out"], (q, k, v), dout, retain_graph=True)

    def forward_backward():
        forward()
        backward()

    operation = {"fwd": forward, "bwd": backward, "fwd+bwd": forward_backward}[direction]

    if device == "cpu":
        kernel, backend_context = "cpu", contextlib.nullcontext()
    else:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        name, kernel = GPU_BACKENDS[backend]
        backend_context = sdpa_kernel(getattr(SDPBackend, name))
    # The forward that a timed backward differentiates runs under the same backend
    # restriction: autograd records the backward of whichever kernel ran forward.
    with backend_context:
        if direction == "bwd":
            forward()
        times = timer.time(operation, args.reps, args.warmup)
        peak = -1
        if device == "cuda":
            # One more run for memory, with the previous results dropped first (the
            # backward keeps the forward's output and autograd graph it needs).
            state.pop("grads", None)
            if direction != "bwd":
                state.pop("out", None)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            operation()
            torch.cuda.synchronize()
            output_bytes = 0
            if direction != "bwd":
                output_bytes += state["out"].numel() * state["out"].element_size()
            if direction != "fwd":
                output_bytes += sum(g.numel() * g.element_size() for g in state["grads"])
            peak = max(torch.cuda.max_memory_allocated() - before - output_bytes, 0)
    outputs = []
    if args.check:
        if direction != "bwd":
            outputs.append(state["out"].detach().float().cpu())
        if direction != "fwd":
            outputs.extend(g.detach().float().cpu() for g in state["grads"])
    return kernel, statistics.median(times), peak, outputs


def deviation(got, want):
    max_abs, scale, finite = 0.0, 0.0, True
    for g, w in zip(got, want):
        finite = finite and bool(torch.isfinite(g).all()) and bool(torch.isfinite(w).all())
        max_abs = max(max_abs, float((g - w).abs().max()))
        scale = max(scale, float(w.abs().max()))
    return max_abs, max_abs / max(scale, 1e-30), finite


def main():
    args = parse_args()
    backends = args.backends.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    needs_gpu = any(b != "torch-cpu" for b in backends)
    if needs_gpu and not torch.cuda.is_available():
        sys.exit("torch_sdpa: a GPU backend was asked for but torch sees no CUDA device")
    devices = {"cpu": cpu_model()}
    timers = {"cpu": Timer("cpu")}
    if needs_gpu:
        devices["cuda"] = torch.cuda.get_device_name(0)
        timers["cuda"] = Timer("cuda")

    writer = None
    if args.csv:
        csv_file = open(args.csv, "w", newline="")
        writer = csv.writer(csv_file)
        writer.writerow(COLUMNS)
    all_cases = list(cases(args))
    total, done, failures = len(all_cases) * len(backends), 0, 0
    print(f"{'backend':<16} {'kernel':<10} {'dtype':<5} {'batch':>5} {'hq':>5} {'hkv':>5} {'seq_q':>7} {'seq_k':>7} "
          f"{'d':>5} {'causal':>6} {'dir':<7} {'ms':>10} {'TFLOP/s':>9} {'peak_MiB':>9} max_err(rel)", flush=True)
    for c in all_cases:
        inputs_by_device = {}
        first = None
        for backend in backends:
            done += 1
            device = "cpu" if backend == "torch-cpu" else "cuda"
            print(f"[{done}/{total}] {backend} {c['dtype']} b={c['batch']} h={c['heads_q']}/{c['heads_kv']} "
                  f"s={c['seq_q']}/{c['seq_k']} d={c['head_dim']}{' causal' if c['causal'] else ''} {c['direction']}",
                  file=sys.stderr, flush=True)
            if device not in inputs_by_device:
                inputs_by_device[device] = make_inputs(c, args.layout, device, args.seed)
            try:
                kernel, ms, peak, outputs = run_case(backend, c, inputs_by_device[device], timers[device], args)
            except RuntimeError as e:
                if "out of memory" in str(e).lower():
                    print(f"{backend}: out of memory: {str(e).splitlines()[0]}", file=sys.stderr)
                    torch.cuda.empty_cache()
                    continue
                print(f"skipped {backend}: {str(e).splitlines()[0]}", file=sys.stderr)
                continue
            tflops = case_flops(c) / (ms * 1e-3) / 1e12
            check = "-"
            if args.check:
                if first is None:
                    first, check = (backend, outputs), "ref"
                else:
                    max_abs, rel, finite = deviation(outputs, first[1])
                    check = f"{max_abs:.3g} ({rel:.2g})"
                    if not finite or rel > TOLERANCE[c["dtype"]]:
                        failures += 1
                        check += " MISMATCH" if finite else " NON-FINITE"
                        print(f"warning: {backend} disagrees with {first[0]}: max |diff| {max_abs:.3g}", file=sys.stderr)
            print(f"{backend:<16} {kernel:<10} {c['dtype']:<5} {c['batch']:>5} {c['heads_q']:>5} {c['heads_kv']:>5} "
                  f"{c['seq_q']:>7} {c['seq_k']:>7} {c['head_dim']:>5} {int(c['causal']):>6} {c['direction']:<7} "
                  f"{ms:>10.3f} {tflops:>9.3f} {peak / 2**20 if peak >= 0 else float('nan'):>9.1f} {check}", flush=True)
            if writer:
                writer.writerow([backend, kernel, devices[device], c["dtype"], c["batch"], c["heads_q"], c["heads_kv"],
                                 c["seq_q"], c["seq_k"], c["head_dim"], int(c["causal"]), c["direction"],
                                 f"{ms:.6g}", f"{tflops:.6g}", peak])
                csv_file.flush()
        if needs_gpu:
            torch.cuda.empty_cache()
    if failures:
        print(f"torch_sdpa: {failures} disagreeing measurement(s)", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
