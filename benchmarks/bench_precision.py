"""Benchmark: what bf16 and fp8 cost against fp32 (the paper's precision), in rankings and vectors.

Re-ranking: an mT5 re-ranker at random weights (the pessimistic case: trained models separate
relevant from irrelevant passages by wide margins, random ones score near-ties) scores lists of
--passages synthetic passages for --queries queries in fp32, bf16 and fp8; per query, Kendall's
tau and the top-10 overlap of each against fp32. On a GPU bf16 and fp8 run compiled (FlexAttention,
what a long re-ranking job runs), fp32 eager. Encoding: a BGE-M3-architecture XLM-R at random
weights encodes --vectors passages in each precision; the cosine of each vector with its fp32
twin. fp8 is emulated where the device has no fp8 tensor cores (same quantisation, plain matmul),
and bf16 on a CPU runs torch's CPU bf16 kernels (slow: tiny models only there). With --out the
JSON is rewritten after every measurement (a run stopped early keeps what it measured).

  python benchmarks/bench_precision.py                       # tiny models, CPU (a few minutes)
  python benchmarks/bench_precision.py --size base --out bench_precision_base.json   # on a GPU
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from scipy.stats import kendalltau

from common import GPU as gpu, Results, random_model
from crossvariety.families.dense import BgeM3Encoder
from crossvariety.neural.random_models import synthetic_passages
from crossvariety.rerank.monot5 import MonoT5ReRanker

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--size", choices=["tiny", "base"], default="tiny",
                    help="tiny 2-layer models, or mT5-base and XLM-R large (BGE-M3)")
parser.add_argument("--queries", type=int, default=0, help="re-ranked lists (20 GPU, 5 CPU)")
parser.add_argument("--passages", type=int, default=1000, help="passages per list")
parser.add_argument("--vectors", type=int, default=0, help="passages encoded (10000 GPU, 1000 CPU)")
parser.add_argument("--out", default="", help="also write the results as JSON here")
args = parser.parse_args()
queries_n = args.queries or (20 if gpu else 5)
vectors_n = args.vectors or (10000 if gpu else 1000)
PRECISIONS = ("fp32", "bf16", "fp8")
results = Results(args.out, size=args.size, queries=queries_n,
                  passages_per_query=args.passages, vectors=vectors_n)


def summary(values):
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "min": float(values.min()),
            "p05": float(np.percentile(values, 5))}


passages = synthetic_passages(max(args.passages, vectors_n), seed=0)
queries = [" ".join(p.split()[:6]) for p in synthetic_passages(queries_n, seed=1)]
with tempfile.TemporaryDirectory() as tmp:
    model = random_model("mt5", args.size, Path(tmp))
    scores = {}
    for precision in PRECISIONS:
        reranker = MonoT5ReRanker(str(model), verbose=False, dtype=precision,
                                  compile="on" if gpu and precision != "fp32" else "off")
        reranker.score(queries[:1] * 64, passages[:64])  # compilation, first-call costs
        start = time.time()
        scores[precision] = np.stack([reranker.score([q] * args.passages,
                                                     passages[:args.passages]) for q in queries])
        rate = queries_n * args.passages / (time.time() - start)
        results[f"rerank_{precision}_pairs_per_s"] = rate
        print(f"re-ranking in {precision}: {rate:,.0f} pairs/s", flush=True)
        del reranker
    for precision in PRECISIONS[1:]:
        taus = [kendalltau(scores["fp32"][i], scores[precision][i])[0] for i in range(queries_n)]
        top10 = [len(set(np.argsort(-scores["fp32"][i])[:10]) &
                     set(np.argsort(-scores[precision][i])[:10])) / 10 for i in range(queries_n)]
        results[f"rerank_{precision}_vs_fp32"] = {
            "kendall_tau": summary(taus), "top10_overlap": summary(top10),
            "max_abs_score_diff": float(np.abs(scores[precision] - scores["fp32"]).max())}
        print(f"re-ranking, {precision} vs fp32: Kendall tau mean {np.mean(taus):.4f} (min "
              f"{np.min(taus):.4f}), top-10 overlap mean {np.mean(top10):.3f} (min "
              f"{np.min(top10):.2f})", flush=True)

    model = random_model("xlmr", "large" if args.size == "base" else "tiny", Path(tmp))
    vectors = {}
    for precision in PRECISIONS:
        encoder = BgeM3Encoder(str(model), max_length=512, verbose=False, dtype=precision)
        start = time.time()
        vectors[precision] = encoder.encode(passages[:vectors_n])
        rate = vectors_n / (time.time() - start)
        results[f"encode_{precision}_passages_per_s"] = rate
        print(f"encoding in {precision}: {rate:,.0f} passages/s", flush=True)
        del encoder
    for precision in PRECISIONS[1:]:
        cosines = (vectors[precision] * vectors["fp32"]).sum(axis=1)  # unit vectors
        results[f"encode_{precision}_vs_fp32_cosine"] = summary(cosines)
        print(f"encoding, {precision} vs fp32: cosine mean {cosines.mean():.6f}, min "
              f"{cosines.min():.6f}", flush=True)
results.finish()
