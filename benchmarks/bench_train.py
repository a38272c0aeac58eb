"""Benchmark: fine-tuning throughput, our scripts vs the reference recipes, in one run.

mT5: finetune_mt5.py (default batch 32; and at batch 4) against the original loop (batch 4,
fp32, AdamW, one step per batch of 4, tokenised per batch), on an mT5 at random weights (tiny
on a CPU, mT5-base with --size base). BGE-M3: finetune_bgem3.py at the paper's recipe against
FlagEmbedding's m3 trainer run with the paper's reference command (fp16 on a GPU, plain AdamW, no
loader workers; its own train_samples_per_second), both on a random-weight XLM-R (tiny, or large =
BGE-M3 with --size base); on a GPU also finetune_bgem3.py --compile off, to show what the CUDA
graphs bring. ColBERT-XM: finetune_colbertxm.py at the recipe (32 tuples per step, bf16 autocast on
a GPU) on a random-weight X-MOD (tiny, or base = ColBERT-XM with --size base); no reference run
(the paper's fork of xm-retrievers is not among the dependencies). Our rates are those of the last
quarter of the steps (the scripts log every quarter), once compilation and graph recording are
done; their time is printed apart, from the whole run. Prints samples/s, the ratios, and the hours
an epoch of the paper's 2.0M-line file takes. --parts chooses among mt5, bgem3 and colbert
(benchmarks/gpu_suite.py gives each its own time limit); with --out the JSON is rewritten after
every measurement.

  python benchmarks/bench_train.py                  # tiny, CPU (a few minutes)
  python benchmarks/bench_train.py --size base      # on a GPU: mT5-base and XLM-R large
"""
import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch

from common import GPU as gpu, Results, random_model, sync
from crossvariety.neural.random_models import synthetic_passages

PARTS = ("mt5", "bgem3", "colbert")
parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--size", choices=["tiny", "base"], default="tiny")
parser.add_argument("--steps", type=int, default=0, help="optimizer steps per measured run")
parser.add_argument("--examples", type=int, default=3000,
                    help="training examples (query, positive, negative) written for the runs")
parser.add_argument("--parts", default=",".join(PARTS), help="of " + ", ".join(PARTS))
parser.add_argument("--bgem3-eager", choices=["auto", "on", "off"], default="auto",
                    help="also run finetune_bgem3.py --compile off (auto: on a GPU, where it "
                    "shows what the CUDA graphs bring)")
parser.add_argument("--out", default="", help="also write the results as JSON here")
args = parser.parse_args()
parts = args.parts.split(",")
if not parts or set(parts) - set(PARTS):
    parser.error(f"--parts {args.parts}: choose among {', '.join(PARTS)}")
PAPER_FILE_LINES = 2_000_000  # triples.{fr_ca,dt_af}.train.HN.2way.2.0M.jsonl
steps = args.steps or (200 if gpu else 20)
results = Results(args.out, size=args.size, steps=steps)


def ours(script, unit, arguments):
    """(samples/s over the last quarter of the steps, seconds of the whole run) of a script."""
    start = time.time()
    output = run([script, *arguments, "--log-every", max(steps // 4, 1)])
    return float(re.findall(rf"\(([\d.]+) {unit}\)", output)[-2]), time.time() - start


def run(command):
    proc = subprocess.run([sys.executable, *map(str, command)], capture_output=True, text=True,
                          cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def mt5(tmp, passages, queries, data):
    """The original loop (batch 4, fp32, tokenised per batch), then finetune_mt5.py at batch 32
    and 4."""
    model_dir = random_model("mt5", args.size, tmp)
    from transformers import AutoTokenizer, MT5ForConditionalGeneration
    device = "cuda" if gpu else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = MT5ForConditionalGeneration.from_pretrained(model_dir).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    pairs = [(q, passages[i], "yes") for i, q in enumerate(queries)] + \
            [(q, passages[len(queries) + i], "no") for i, q in enumerate(queries)]
    ref_steps = max(steps // 2, 10)
    start = None
    for s in range(ref_steps + 3):  # the original: tokenise, step, for every batch of 4
        if s == 3:
            sync()
            start = time.time()
        batch = pairs[s * 4:(s + 1) * 4]
        enc = tokenizer([f"Query: {q} Document: {d} Relevant:" for q, d, _ in batch],
                        padding=True, truncation=True, max_length=512, return_tensors="pt")
        target = tokenizer([t for _, _, t in batch], padding=True, return_tensors="pt").input_ids
        loss = model(**enc.to(device), labels=target.to(device)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    sync()
    reference = ref_steps * 4 / (time.time() - start)
    results["mt5_reference_bs4_fp32"] = reference
    del model, optimizer
    if gpu:
        torch.cuda.empty_cache()
    print(f"mT5, original loop (batch 4, fp32): {reference:,.1f} samples/s", flush=True)
    for batch_size in (32, 4):
        rate, whole = ours("finetune_mt5.py", "pairs/s", [
            "--train", data, "--model", model_dir, "--out", tmp / f"mt5-out-{batch_size}",
            "--batch-size", batch_size, "--max-steps", steps, "--save-every", 10**9])
        results.update({f"mt5_ours_bs{batch_size}": rate,
                        f"mt5_ours_bs{batch_size}_whole_run_s": whole,
                        f"mt5_speedup_bs{batch_size}": rate / reference})
        print(f"mT5, finetune_mt5.py batch {batch_size}: {rate:,.1f} samples/s -> "
              f"{rate / reference:.1f}x (whole run {whole:.0f} s)", flush=True)


def bgem3(tmp, passages, data):
    """FlagEmbedding's m3 trainer with the paper's command, then finetune_bgem3.py (with and
    without compilation)."""
    xlmr = random_model("xlmr", "large" if args.size == "base" else "tiny", tmp)
    common = ["--model_name_or_path", xlmr, "--train_data", data, "--learning_rate", "1e-5",
              "--num_train_epochs", "1", "--max_steps", steps, "--per_device_train_batch_size",
              "8", "--temperature", "0.02", "--query_max_len", "64", "--passage_max_len", "256",
              "--train_group_size", "2", "--negatives_cross_device", "--logging_steps", steps,
              "--save_strategy", "no", "--query_instruction_for_retrieval", "",
              "--report_to", "none"]
    reference_cmd = ["-m", "torch.distributed.run", "--nproc_per_node", "1", "-m",
                     "FlagEmbedding.finetune.embedder.encoder_only.m3", "--output_dir",
                     tmp / "bge-ref"] + common + (["--fp16"] if gpu else ["--use_cpu", "True"])
    output = run(reference_cmd)
    reference = float(re.findall(r"'train_samples_per_second': ([\d.]+)", output)[-1])
    results.update(bgem3_reference=reference,
                   bgem3_reference_hours_per_epoch=PAPER_FILE_LINES / reference / 3600)
    print(f"BGE-M3, FlagEmbedding reference command: {reference:,.1f} samples/s", flush=True)
    eager = args.bgem3_eager == "on" or (args.bgem3_eager == "auto" and gpu)
    for compile_setting in (["auto", "off"] if eager else ["auto"]):
        rate, whole = ours("finetune_bgem3.py", "samples/s", [
            "--train", data, "--model", xlmr, "--out", tmp / f"bge-ours-{compile_setting}",
            "--max-steps", steps, "--compile", compile_setting])
        label = "bgem3_ours" + ("" if compile_setting == "auto" else "_eager")
        results.update({label: rate, f"{label}_whole_run_s": whole,
                        f"{label}_speedup": rate / reference,
                        f"{label}_hours_per_epoch": PAPER_FILE_LINES / rate / 3600})
        print(f"BGE-M3, finetune_bgem3.py --compile {compile_setting}: {rate:,.1f} samples/s -> "
              f"{rate / reference:.2f}x (whole run {whole:.0f} s); an epoch of the paper's "
              f"2.0M lines: {PAPER_FILE_LINES / rate / 3600:.1f} h (reference "
              f"{PAPER_FILE_LINES / reference / 3600:.1f} h)", flush=True)


def colbert(tmp, passages, data):
    """finetune_colbertxm.py at the recipe's 32 tuples per step."""
    # tiny: bench_colbert.py's checkpoint (a suite builds it once); the speed is the same
    model_dir = random_model("colbert_xm", args.size, tmp, lexical=args.size == "tiny")
    rate, whole = ours("finetune_colbertxm.py", "tuples/s", [
        "--train", data, "--model", model_dir, "--language", "fr", "--out", tmp / "colbert-out",
        "--max-steps", steps, "--warmup-steps", 0, "--save-every", 10**9])
    results.update(colbertxm_ours=rate, colbertxm_ours_whole_run_s=whole)
    print(f"ColBERT-XM, finetune_colbertxm.py: {rate:,.1f} samples/s (whole run {whole:.0f} s)",
          flush=True)


with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    passages = synthetic_passages(2 * args.examples, seed=0)
    queries = [" ".join(p.split()[:6]) for p in synthetic_passages(args.examples, seed=1)]
    data = tmp / "train.jsonl"
    data.write_text("".join(json.dumps({"query": q, "pos": [passages[i]],
                                        "neg": [passages[args.examples + i]]}) + "\n"
                            for i, q in enumerate(queries)))
    if "mt5" in parts:
        mt5(tmp, passages, queries, data)
    if "bgem3" in parts:
        bgem3(tmp, passages, data)
    if "colbert" in parts:
        colbert(tmp, passages, data)
results.finish()
