"""Benchmark: mT5 re-ranking throughput, ours vs pyterrier-t5's mT5ReRanker, in one run.

Builds an mT5 re-ranker at random weights (throughput does not depend on the weights) with a
sentencepiece tokenizer trained on synthetic passages of mMARCO-like length, then scores the
same (query, passage) pairs with pyterrier-t5 at batch 4 (the original path) and batch 64, and
with crossvariety.rerank.MonoT5ReRanker (--dtype; on a GPU with fp8 tensor cores also in fp8).
Prints pairs/s, the fraction of the bf16 peak (GPU), the ratios, and the largest score difference
against pyterrier-t5 at batch 1 on a sample.

  python benchmarks/bench_rerank.py                 # tiny 2-layer model on the CPU (a minute)
  python benchmarks/bench_rerank.py --size base     # mT5-base architecture; meant for a GPU

Options: --pairs N (pairs for our path; the reference paths get fewer: they are slow),
--ref-pairs N, --batch-tokens N, --out FILE.json.
"""
import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
import torch

from crossvariety.random_models import build_mt5, synthetic_passages
from crossvariety.rerank import MonoT5ReRanker

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--size", choices=["tiny", "base"], default="tiny")
parser.add_argument("--pairs", type=int, default=0, help="pairs for our path (default by size)")
parser.add_argument("--ref-pairs", type=int, default=0, help="pairs for the reference paths")
parser.add_argument("--batch-tokens", type=int, default=0, help="our token budget (0 = default)")
parser.add_argument("--dtype", default="auto", help="our precision: auto, bf16, fp32 or fp8")
parser.add_argument("--out", default="", help="also write the results as JSON here")
args = parser.parse_args()
gpu = torch.cuda.is_available()
pairs = args.pairs or (40000 if gpu else 2000)
ref_pairs = args.ref_pairs or (4000 if gpu else 500)
PEAK = 798e12  # bf16 dense matmul measured on an H100 (shared/bench-reference)


def flops_per_pair(config, tokens):
    """Matmuls of the encoder layers and their attention, and of the decoder's cross-attention
    keys and values (its one step is negligible otherwise), for pairs of ``tokens`` tokens."""
    d, ff = config.d_model, config.d_ff
    inner = config.num_heads * config.d_kv
    encoder = config.num_layers * (2 * (4 * d * inner + 3 * d * ff) * tokens.mean()
                                   + 4 * inner * (tokens ** 2).mean())
    return encoder + config.num_decoder_layers * 4 * d * inner * tokens.mean()


def timed(fn, frame, warmup):
    fn(frame.iloc[:warmup])  # first-call costs (CUDA context, kernels) are not throughput
    if gpu:
        torch.cuda.synchronize()
    start = time.time()
    out = fn(frame)
    if gpu:
        torch.cuda.synchronize()
    return out, time.time() - start


passages = synthetic_passages(max(pairs, ref_pairs) + 200, seed=0)
queries = [" ".join(p.split()[:6]) for p in synthetic_passages(200, seed=1)]
frame = pd.DataFrame({"qid": [str(i % 200) for i in range(pairs)],
                      "query": [queries[i % 200] for i in range(pairs)],
                      "docno": [str(i) for i in range(pairs)],
                      "text": passages[:pairs]})
with tempfile.TemporaryDirectory() as tmp:
    start = time.time()
    model = build_mt5(Path(tmp) / "mt5", passages[:5000] + ["Query: Document: Relevant: yes no"],
                      size=args.size, vocab_size=8000)
    print(f"built {args.size} mT5 at random weights in {time.time() - start:.0f}s", flush=True)
    from pyterrier_t5 import mT5ReRanker
    results = {"size": args.size, "device": torch.cuda.get_device_name() if gpu else
               f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "
               "threads)", "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    from transformers import AutoConfig
    from crossvariety import fp8
    config = AutoConfig.from_pretrained(model)
    dtypes = [args.dtype] + (["fp8"] if gpu and args.dtype != "fp8" and
                             fp8.supported(torch.device("cuda")) else [])
    for dtype in dtypes:
        ours = MonoT5ReRanker(str(model), batch_tokens=args.batch_tokens, verbose=False,
                              dtype=dtype)
        tokens = np.array([len(i) for i in ours._tokenize(
            list(zip(frame["query"][:2000], frame["text"][:2000])))])
        results["tokens_per_pair_mean"] = float(tokens.mean())
        scored_in, seconds = timed(ours, frame, warmup=64)
        key = "ours" if dtype == args.dtype else f"ours_{dtype}"
        results[key] = {"pairs": pairs, "seconds": seconds, "pairs_per_s": pairs / seconds,
                        "batch_tokens": ours.batch_tokens, "dtype": ours.precision}
        peak = ""
        if gpu:
            results[key]["fraction_of_bf16_peak"] = \
                pairs * flops_per_pair(config, tokens) / seconds / PEAK
            peak = f", {results[key]['fraction_of_bf16_peak']:.0%} of the bf16 peak"
        print(f"ours ({ours.precision}, {ours.batch_tokens} tokens/batch): "
              f"{pairs / seconds:,.0f} pairs/s{peak}", flush=True)
        if key == "ours":
            scored = scored_in
        del ours
    sample = frame.iloc[:ref_pairs]
    for batch_size in (4, 64):
        reference = mT5ReRanker(str(model), str(model), batch_size=batch_size, verbose=False)
        _, seconds = timed(reference, sample, warmup=batch_size)
        results[f"pyterrier_t5_bs{batch_size}"] = {"pairs": ref_pairs, "seconds": seconds,
                                                   "pairs_per_s": ref_pairs / seconds}
        results[f"speedup_vs_bs{batch_size}"] = results["ours"]["pairs_per_s"] / (ref_pairs / seconds)
        print(f"pyterrier-t5 batch {batch_size} (fp32): {ref_pairs / seconds:,.0f} pairs/s -> "
              f"ours is {results[f'speedup_vs_bs{batch_size}']:.1f}x", flush=True)
        del reference
    one = mT5ReRanker(str(model), str(model), batch_size=1, verbose=False)(frame.iloc[:200])
    results["max_abs_score_diff_vs_bs1"] = float(np.abs(one.score.to_numpy() -
                                                        scored.score.to_numpy()[:200]).max())
    print(f"largest |score difference| vs pyterrier-t5 batch 1 on 200 pairs: "
          f"{results['max_abs_score_diff_vs_bs1']:.2e}")
if args.out:
    Path(args.out).write_text(json.dumps(results, indent=1))
print(json.dumps(results, indent=1))
