"""Benchmark: mT5 re-ranking throughput, ours vs pyterrier-t5's mT5ReRanker, in one run.

Builds an mT5 re-ranker at random weights (throughput does not depend on the weights) with a
sentencepiece tokenizer trained on synthetic passages of mMARCO-like length, then scores the
same (query, passage) pairs, text in and scores out, with:
- crossvariety.rerank.monot5.MonoT5ReRanker (--dtype), eager (crossvariety.rerank.t5 with SDPA) and compiled
  (FlexAttention, torch.compile; its compilation is timed apart, on a warm-up sample), and on a
  GPU with fp8 tensor cores also compiled in fp8;
- the same re-ranker with transformers' own modules as its forward pass (this project's path
  before crossvariety.rerank.t5: the lever that the fused forward is);
- pyterrier-t5 at batch 4 (the original path) and batch 64, on --ref-pairs pairs (measured
  first: cheap, and the basis of every ratio).
--variants chooses among ours. Prints pairs/s (also of the model alone, on the same batches
tokenised beforehand), the fraction of the bf16 peak (GPU; the encoder's matmuls and attention,
the basis of the 42,900 pairs/s limit of the issue), the graphs compiled (more after the warm-up
means recompilation), the ratios, and the largest score difference against pyterrier-t5 at
batch 1 on a sample. With --out the JSON is rewritten after every measurement (a run stopped
early keeps what it measured).

  python benchmarks/bench_rerank.py                 # tiny 2-layer model on the CPU (~2 minutes)
  python benchmarks/bench_rerank.py --size base --out rerank_base.json   # mT5-base; on a GPU
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
import torch
from torch._dynamo.utils import counters

from common import BF16_PEAK, GPU as gpu, Results, error_text, random_model, sync
from crossvariety.neural import compiling, fp8
from crossvariety.neural.batching import padded_batches
from crossvariety.neural.random_models import synthetic_passages
from crossvariety.rerank.monot5 import MonoT5ReRanker, prompt_tokenizer

# ours: (precision, --compile); None = --dtype
VARIANTS = {"eager": (None, "off"), "compiled": (None, "on"), "compiled_fp8": ("fp8", "on"),
            "transformers_modules": (None, "off")}
parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--size", choices=["tiny", "base"], default="tiny")
parser.add_argument("--pairs", type=int, default=0, help="pairs for our path (default by size)")
parser.add_argument("--ref-pairs", type=int, default=0, help="pairs for the reference paths")
parser.add_argument("--warmup-pairs", type=int, default=0,
                    help="pairs scored first by a compiled path (its compilation)")
parser.add_argument("--batch-tokens", type=int, default=0, help="our token budget (0 = default)")
parser.add_argument("--dtype", default="auto", help="our precision: auto, bf16, fp32 or fp8")
parser.add_argument("--variants", default="",
                    help="ours to measure, comma-separated, of " + ", ".join(VARIANTS) +
                    " (default: all; compiled_fp8 only on a GPU with fp8 tensor cores, "
                    "elsewhere it is emulated)")
parser.add_argument("--ref-batch-sizes", default="4,64",
                    help="pyterrier-t5's batch sizes (empty: none)")
parser.add_argument("--score-check-pairs", type=int, default=200,
                    help="pairs scored by pyterrier-t5 at batch 1 to compare scores (0: none)")
parser.add_argument("--compile-backend", default="inductor",
                    help="torch.compile's backend for the compiled variants (aot_eager: the "
                    "same graph capture without generating code; a quick check on a CPU)")
parser.add_argument("--out", default="", help="also write the results as JSON here")
args = parser.parse_args()
pairs = args.pairs or (40000 if gpu else 2000)
ref_pairs = args.ref_pairs or (2000 if gpu else 500)
warmup_pairs = args.warmup_pairs or (4000 if gpu else 300)
ref_batch_sizes = [int(b) for b in args.ref_batch_sizes.split(",") if b]
variants = args.variants.split(",") if args.variants else [
    key for key in VARIANTS if key != "compiled_fp8" or
    (gpu and args.dtype != "fp8" and fp8.supported(torch.device("cuda")))]
unknown = sorted(set(variants) - set(VARIANTS))
if unknown:
    parser.error(f"--variants: unknown {', '.join(unknown)}; choose among {', '.join(VARIANTS)}")


def encoder_flops_per_pair(config, tokens):
    """Matmuls of the encoder layers and their attention, for pairs of ``tokens`` tokens."""
    d, ff, inner = config.d_model, config.d_ff, config.num_heads * config.d_kv
    ff_matrices = 3 if config.is_gated_act else 2
    return config.num_layers * (2 * (4 * d * inner + ff_matrices * d * ff) * tokens.mean()
                                + 4 * inner * (tokens ** 2).mean())


def timed(fn, frame):
    sync()
    start = time.time()
    out = fn(frame)
    sync()
    return out, time.time() - start


class TransformersForward(torch.nn.Module):
    """The forward pass through transformers' own encoder and decoder (as before crossvariety.rerank.t5):
    the full cross-attention, the eager T5 attention, the logits' direction only."""

    def __init__(self, path, reranker):
        super().__init__()
        from transformers import AutoModelForSeq2SeqLM
        from crossvariety.neural import precision
        model = AutoModelForSeq2SeqLM.from_pretrained(path, dtype=precision.weights(
            reranker.precision))
        del model.lm_head
        model = precision.prepare(model, reranker.precision, reranker.device)
        self.encoder, self.decoder = model.get_encoder(), model.get_decoder()
        self.start_id = model.config.decoder_start_token_id
        self.direction = reranker.network.direction

    def forward(self, input_ids, lengths):
        mask = (torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
                < lengths[:, None]).long()
        hidden = self.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        start = torch.full((len(input_ids), 1), self.start_id, device=input_ids.device)
        state = self.decoder(input_ids=start, encoder_hidden_states=hidden,
                             encoder_attention_mask=mask, use_cache=False).last_hidden_state
        return state[:, 0].float() @ self.direction


passages = synthetic_passages(max(pairs, ref_pairs, warmup_pairs) + 200, seed=0)
queries = [" ".join(p.split()[:6]) for p in synthetic_passages(200, seed=1)]
total = max(pairs, warmup_pairs)
frame = pd.DataFrame({"qid": [str(i % 200) for i in range(total)],
                      "query": [queries[i % 200] for i in range(total)],
                      "docno": [str(i) for i in range(total)],
                      "text": passages[:total]})
warmup = frame.iloc[-warmup_pairs:].copy()  # other pairs than the timed ones' first
frame = frame.iloc[:pairs]
results = Results(args.out, size=args.size, pairs=pairs)
with tempfile.TemporaryDirectory() as tmp:
    model = random_model("mt5", args.size, Path(tmp))
    from transformers import AutoConfig, AutoTokenizer
    config = AutoConfig.from_pretrained(model)
    tokens = prompt_tokenizer(AutoTokenizer.from_pretrained(model))(
        list(zip(frame["query"][:2000], frame["text"][:2000]))).lengths
    results["tokens_per_pair_mean"] = float(tokens.mean())
    scored = {}

    def ratios():
        """Each of ours against eager and the references, from what has been measured."""
        done = [k for k in variants if "pairs_per_s" in results.get(k, {})]
        for key in done:
            if key != "eager" and "eager" in done:
                results[f"{key}_vs_eager"] = results[key]["pairs_per_s"] / \
                    results["eager"]["pairs_per_s"]
        for batch_size in ref_batch_sizes:
            reference = results.get(f"pyterrier_t5_bs{batch_size}")
            if done and reference:
                results[f"best_vs_pyterrier_t5_bs{batch_size}"] = max(
                    results[k]["pairs_per_s"] for k in done) / reference["pairs_per_s"]

    # 1. the references, on a sample: the original path (batch 4) and a larger batch
    from pyterrier_t5 import mT5ReRanker
    sample = frame.iloc[:ref_pairs]
    for batch_size in ref_batch_sizes:
        reference = mT5ReRanker(str(model), str(model), batch_size=batch_size, verbose=False)
        reference(sample.iloc[:batch_size])  # first-call costs
        _, seconds = timed(reference, sample)
        results[f"pyterrier_t5_bs{batch_size}"] = {"pairs": ref_pairs, "seconds": seconds,
                                                   "pairs_per_s": ref_pairs / seconds}
        print(f"pyterrier-t5 batch {batch_size} (fp32): {ref_pairs / seconds:,.0f} pairs/s",
              flush=True)
        del reference

    # 2. ours
    def measure(key):
        dtype, compile_setting = VARIANTS[key]
        ours = MonoT5ReRanker(str(model), batch_tokens=args.batch_tokens, verbose=False,
                              dtype=dtype or args.dtype, compile=compile_setting)
        ours.compiler.backend = args.compile_backend
        if key == "transformers_modules":
            ours.compiler = compiling.Compiler(TransformersForward(model, ours), "off",
                                               ours.device, "transformers' modules")
        graphs = counters["stats"]["unique_graphs"]
        _, seconds = timed(ours, warmup)  # compilation (compiled paths), first-call costs
        record = {"warmup_pairs": len(warmup), "warmup_seconds": seconds,
                  "graphs_compiled_in_warmup": counters["stats"]["unique_graphs"] - graphs}
        graphs = counters["stats"]["unique_graphs"]
        scored[key], seconds = timed(ours, frame)
        record.update(seconds=seconds, pairs_per_s=pairs / seconds, dtype=ours.precision,
                      fp8_tensor_cores=ours.precision == "fp8" and fp8.supported(ours.device),
                      batch_tokens=ours.batch_tokens,
                      compiled=bool(ours.compiler.wanted(pairs)),
                      # past dynamo's recompile limit calls fall back to slow eager code
                      graphs_compiled_while_timed=counters["stats"]["unique_graphs"] - graphs,
                      tokenizer_workers=ours.tokenization.workers)
        # the model alone, on the same batches tokenised beforehand: what tokenisation and the
        # host's work cost the whole path
        prepared = ours.tokenization.tokenize(list(zip(frame["query"], frame["text"])))
        logits = ours.compiler.for_job(pairs)
        with torch.inference_mode():
            sync()
            start = time.time()
            for batch in padded_batches(prepared, ours.pad_id, ours.batch_tokens, ours.device):
                logits(batch.input_ids, batch.lengths)
            sync()
        record["model_only_pairs_per_s"] = pairs / (time.time() - start)
        peak = ""
        if gpu:
            for name, rate in (("", record["pairs_per_s"]),
                               ("model_only_", record["model_only_pairs_per_s"])):
                record[f"{name}fraction_of_bf16_peak"] = rate * encoder_flops_per_pair(
                    config, tokens) / BF16_PEAK
            peak = f", {record['fraction_of_bf16_peak']:.0%} of the bf16 peak"
        print(f"{key} ({ours.precision}, {ours.batch_tokens} tokens/batch): {pairs / seconds:,.0f} "
              f"pairs/s{peak}; the model alone {record['model_only_pairs_per_s']:,.0f} pairs/s "
              f"(warm-up {record['warmup_seconds']:.0f}s)", flush=True)
        return record

    for key in variants:
        try:  # one failing variant (a compiler, fp8 kernels) must not lose the others
            results[key] = measure(key)
        except Exception as error:
            results[key] = {"error": error_text(error)}
            print(f"{key}: failed: {results[key]['error'][:300]}", flush=True)
        ratios()
        if gpu:
            torch.cuda.empty_cache()
    for batch_size in ref_batch_sizes:
        if f"best_vs_pyterrier_t5_bs{batch_size}" in results:
            print(f"our best vs pyterrier-t5 batch {batch_size}: "
                  f"{results[f'best_vs_pyterrier_t5_bs{batch_size}']:.1f}x", flush=True)

    # 3. scores against pyterrier-t5 at batch 1 (fp32; its scores at larger batches depend on
    # their batch-mates)
    if args.score_check_pairs:
        check = frame.iloc[:args.score_check_pairs]
        one = mT5ReRanker(str(model), str(model), batch_size=1, verbose=False)(check)
        for key in scored:
            results[f"{key}_max_abs_score_diff_vs_bs1"] = float(np.abs(
                one.score.to_numpy() - scored[key].score.to_numpy()[:len(check)]).max())
            print(f"{key}: largest |score difference| vs pyterrier-t5 batch 1 (fp32) on "
                  f"{len(check)} pairs: {results[f'{key}_max_abs_score_diff_vs_bs1']:.2e}",
                  flush=True)
results.finish()
