#!/usr/bin/env python3
"""Model-level prefill benchmark: a Pythia-2.8B-shaped GPT-NeoX in bf16 on one CUDA GPU.

For every attention implementation (eager, sdpa, flex_attention, tileflash) and prompt
length it measures, with the same weights:
  prefill_ms   one forward over the prompt (logits of the last position only, no KV cache),
  ttft_ms      time to first token: that forward plus sampling one token to the host,
  peak_gib     peak CUDA memory allocated during the prefill (weights included),
  and the last-position logits' agreement with eager's where eager fits in memory.

Batch 1 runs every prompt length; batch 8 runs ragged prompts (lengths drawn in [L/2, L],
left-padded to L with an attention mask). A configuration that runs out of memory is
recorded as "oom" and the same implementation skips longer prompts.

    python bench/model_prefill.py                 # the full sweep, CSV + PNG in bench/results/
    python bench/model_prefill.py --quick         # a few lengths, fewer repetitions
    python bench/model_prefill.py --checkpoint /path/to/pythia-2.8b   # real weights
"""

import argparse
import csv
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

IMPLEMENTATIONS = ("eager", "sdpa", "flex_attention", "tileflash")
FULL_LENGTHS = (512, 1024, 2048, 4096, 8192, 16384, 32768)
FULL_RAGGED_LENGTHS = (512, 1024, 2048, 4096, 8192)
QUICK_LENGTHS = (512, 2048, 8192)
QUICK_RAGGED_LENGTHS = (1024,)
RAGGED_BATCH = 8
COLUMNS = ("implementation", "batch", "prompt_len", "tokens", "status", "prefill_ms", "prefill_ms_per_prompt",
           "ttft_ms", "peak_gib", "max_abs_logit_diff_vs_eager", "argmax_agrees_with_eager", "device", "torch",
           "transformers")


def pythia_2_8b_config(max_positions):
    import transformers

    return transformers.GPTNeoXConfig(
        vocab_size=50304, hidden_size=2560, num_hidden_layers=32, num_attention_heads=32, intermediate_size=10240,
        rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=max_positions, use_parallel_residual=True,
        hidden_act="gelu", layer_norm_eps=1e-5, tie_word_embeddings=False, use_cache=False)


def build_model(checkpoint, max_positions):
    import transformers

    if checkpoint:
        model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.bfloat16)
        model = model.to("cuda")
    else:
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = transformers.AutoModelForCausalLM.from_config(pythia_2_8b_config(max_positions),
                                                                  dtype=torch.bfloat16)
    return model.eval()


def make_prompts(batch, length, vocab, generator):
    """input_ids (batch, length) and a left-padding attention mask, or None for batch 1."""
    input_ids = torch.randint(0, vocab, (batch, length), generator=generator)
    if batch == 1:
        return input_ids.cuda(), None
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=generator)
    lengths[0] = length  # the longest prompt sets the padded length
    positions = torch.arange(length).unsqueeze(0)
    attention_mask = (positions >= (length - lengths).unsqueeze(1)).long()
    return input_ids.cuda(), attention_mask.cuda()


def prefill(model, input_ids, attention_mask):
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1).logits[:, -1]


def sample(logits, generator):
    probabilities = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probabilities, 1, generator=generator).tolist()


def measure(model, input_ids, attention_mask, repetitions):
    """Median prefill and time-to-first-token in ms, the peak memory in GiB, and the last logits."""
    sampler = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        logits = prefill(model, input_ids, attention_mask)  # warm-up: compilation, allocator, autotuning
        sample(logits, sampler)
        del logits
        torch.cuda.synchronize()
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        prefill_ms, ttft_ms = [], []
        for _ in range(repetitions):
            torch.cuda.synchronize()
            start = time.perf_counter()
            logits = prefill(model, input_ids, attention_mask)
            torch.cuda.synchronize()
            after_prefill = time.perf_counter()
            sample(logits, sampler)  # ends with a copy to the host: the token is there
            done = time.perf_counter()
            prefill_ms.append((after_prefill - start) * 1e3)
            ttft_ms.append((done - start) * 1e3)
        peak = torch.cuda.max_memory_allocated() / 2**30
    return statistics.median(prefill_ms), statistics.median(ttft_ms), peak, logits.float()


def release():
    gc.collect()
    torch.cuda.empty_cache()


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, memory) = plt.subplots(1, 2, figsize=(13, 5))
    for implementation in IMPLEMENTATIONS:
        for batch, style in ((1, "-o"), (RAGGED_BATCH, "--s")):
            points = [r for r in rows if r["implementation"] == implementation and r["batch"] == batch
                      and r["status"] == "ok"]
            if not points:
                continue
            lengths = [r["prompt_len"] for r in points]
            label = f"{implementation} (batch {batch}{', ragged' if batch > 1 else ''})"
            latency.plot(lengths, [r["prefill_ms"] for r in points], style, label=label)
            memory.plot(lengths, [r["peak_gib"] for r in points], style, label=label)
    for axis, title, unit in ((latency, "Prefill latency", "ms"), (memory, "Peak CUDA memory", "GiB")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("prompt length (tokens)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    latency.legend(fontsize=7)
    device = rows[0]["device"] if rows else ""
    figure.suptitle(f"Pythia-2.8B-shaped GPT-NeoX prefill, bf16, {device}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def print_table(rows):
    print(f"{'implementation':>15} {'batch':>5} {'prompt':>6} {'status':>7} {'prefill ms':>11} {'ttft ms':>9} "
          f"{'peak GiB':>9} {'|dlogit|':>9} {'argmax':>6}")
    for r in rows:
        def number(key, fmt):
            return format(r[key], fmt) if isinstance(r[key], float) else str(r[key])

        print(f"{r['implementation']:>15} {r['batch']:>5} {r['prompt_len']:>6} {r['status']:>7} "
              f"{number('prefill_ms', '.1f'):>11} {number('ttft_ms', '.1f'):>9} {number('peak_gib', '.2f'):>9} "
              f"{number('max_abs_logit_diff_vs_eager', '.3g'):>9} {str(r['argmax_agrees_with_eager']):>6}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few lengths and 2 repetitions")
    parser.add_argument("--checkpoint", help="a local Hugging Face checkpoint folder (default: random weights)")
    parser.add_argument("--implementations", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--lengths", nargs="+", type=int, help="batch-1 prompt lengths")
    parser.add_argument("--ragged-lengths", nargs="+", type=int, help=f"batch-{RAGGED_BATCH} padded prompt lengths")
    parser.add_argument("--repetitions", type=int, help="timed repetitions per point (default 5, quick 2)")
    parser.add_argument("--time-budget", type=float, default=480.0,
                        help="seconds; points not started within it are recorded as skipped")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="folder for the CSV and PNG")
    parser.add_argument("--tag", default="", help="added to the output file names")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        sys.exit("model_prefill.py needs a CUDA GPU")
    import transformers
    from tqdm import tqdm

    import tileflash.integrations.transformers as tileflash_hf

    tileflash_hf.register()
    lengths = args.lengths or (QUICK_LENGTHS if args.quick else FULL_LENGTHS)
    ragged_lengths = args.ragged_lengths if args.ragged_lengths is not None else (
        QUICK_RAGGED_LENGTHS if args.quick else FULL_RAGGED_LENGTHS)
    repetitions = args.repetitions or (2 if args.quick else 5)
    device = torch.cuda.get_device_name()
    model = build_model(args.checkpoint, max(list(lengths) + list(ragged_lengths)))
    vocab = model.config.vocab_size
    points = [(1, n) for n in lengths] + [(RAGGED_BATCH, n) for n in ragged_lengths]
    generator = torch.Generator().manual_seed(1234)
    prompts = {point: make_prompts(*point, vocab, generator) for point in points}

    rows, eager_logits, out_of_memory = [], {}, set()
    started = time.monotonic()
    progress = tqdm(total=len(points) * len(args.implementations), desc="prefill", unit="point")
    # Eager first, so every other implementation can be compared with its logits; flex_attention
    # last, as its per-shape compilation is the slowest part when the time budget is short.
    order = ("eager", "tileflash", "sdpa", "flex_attention")
    ordered = sorted(args.implementations, key=order.index)
    for implementation in ordered:
        model.set_attn_implementation(implementation)
        for batch, length in points:
            progress.set_postfix_str(f"{implementation} b{batch} n{length}")
            row = {key: "" for key in COLUMNS}
            row.update(implementation=implementation, batch=batch, prompt_len=length, device=device,
                       torch=torch.__version__, transformers=transformers.__version__)
            input_ids, attention_mask = prompts[(batch, length)]
            row["tokens"] = int(attention_mask.sum()) if attention_mask is not None else length
            if (implementation, batch) in out_of_memory:
                row["status"] = "skipped (oom at a shorter prompt)"
            elif time.monotonic() - started > args.time_budget:
                row["status"] = "skipped (time budget)"
            else:
                try:
                    prefill_ms, ttft_ms, peak, logits = measure(model, input_ids, attention_mask, repetitions)
                    row.update(status="ok", prefill_ms=prefill_ms, prefill_ms_per_prompt=prefill_ms / batch,
                               ttft_ms=ttft_ms, peak_gib=peak)
                    if implementation == "eager":
                        eager_logits[(batch, length)] = logits
                    elif (batch, length) in eager_logits:
                        reference = eager_logits[(batch, length)]
                        row["max_abs_logit_diff_vs_eager"] = (logits - reference).abs().max().item()
                        row["argmax_agrees_with_eager"] = bool((logits.argmax(-1) == reference.argmax(-1)).all())
                    del logits
                except torch.cuda.OutOfMemoryError:
                    row["status"] = "oom"
                    out_of_memory.add((implementation, batch))
                except Exception as error:  # one implementation's failure must not end the sweep
                    row["status"] = f"error: {type(error).__name__}"
                    tqdm.write(f"{implementation} batch {batch} prompt {length}: {error!r}"[:2000])
                release()
            rows.append(row)
            progress.update()
    progress.close()

    args.output.mkdir(parents=True, exist_ok=True)
    slug = device.lower().replace("nvidia ", "").replace(" ", "-")
    stem = f"model_prefill_pythia2.8b_{slug}{'_quick' if args.quick else ''}{args.tag}"
    with open(args.output / f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in row.items()})
    plot(rows, args.output / f"{stem}.png")
    print_table(rows)
    print(f"\nwrote {args.output / stem}.csv and .png ({time.monotonic() - started:.0f} s)")
    print("repro: python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:]), f"# {platform.node()}")


if __name__ == "__main__":
    main()
