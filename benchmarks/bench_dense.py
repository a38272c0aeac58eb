"""Benchmark: BGE-M3 indexing and exhaustive search, ours vs pyterrier-dr, in one run.

Indexing: a BGE-M3-architecture encoder at random weights (tiny XLM-R on a CPU; XLM-R large, as
BGE-M3, with --size large) encodes synthetic passages of mMARCO-like length into a FlexIndex,
once with pyterrier-dr (``BGEM3(...).doc_encoder() >> FlexIndex``, fp32, batch 64: the original
path) and once with index_bgem3.py's path (crossvariety.dense.build_index). Prints passages/s,
tokens/s, the fraction of the bf16 peak (GPU), the ratio, and the smallest cosine between the two
indexes' vectors.

Search: random unit vectors; pyterrier-dr's np_retriever vs our TorchSearch (fp16 on a GPU):
queries/s and the overlap of their top-10.

  python benchmarks/bench_dense.py                       # tiny, CPU, about a minute
  python benchmarks/bench_dense.py --size large --docs 40000 --search-docs 8800000   # on a GPU
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
import pyterrier_dr  # noqa: F401  (imported before any timing: it imports FlagEmbedding, ~1 s)
import torch

from crossvariety import dense
from crossvariety.random_models import build_xlmr, synthetic_passages

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--size", choices=["tiny", "large"], default="tiny")
parser.add_argument("--docs", type=int, default=0, help="passages for our indexing path")
parser.add_argument("--ref-docs", type=int, default=0, help="passages for pyterrier-dr's path")
parser.add_argument("--max-length", type=int, default=1024)
parser.add_argument("--dtype", default="auto", help="our precision: auto, bf16, fp32 or fp8")
parser.add_argument("--search-docs", type=int, default=0, help="vectors in the search benchmark")
parser.add_argument("--ref-search-docs", type=int, default=0,
                    help="vectors for np_retriever (slow; its time is scaled to --search-docs)")
parser.add_argument("--queries", type=int, default=6980)
parser.add_argument("--out", default="", help="also write the results as JSON here")
args = parser.parse_args()
gpu = torch.cuda.is_available()
docs_n = args.docs or (40000 if gpu else 3000)
ref_docs_n = args.ref_docs or (10000 if gpu else 1000)
search_n = args.search_docs or (8_800_000 if gpu else 200_000)
ref_search_n = args.ref_search_docs or min(search_n, 1_000_000 if gpu else 200_000)
PEAK = 798e12  # bf16 dense matmul measured on an H100 (shared/bench-reference)
results = {"size": args.size, "device": torch.cuda.get_device_name() if gpu else
           f"cpu ({torch.get_num_threads()} threads)", "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d")}


def sync():
    if gpu:
        torch.cuda.synchronize()


passages = synthetic_passages(max(docs_n, ref_docs_n), seed=0)
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    model = build_xlmr(tmp / "xlmr", passages[:5000], size=args.size, vocab_size=8000)
    encoder = dense.BgeM3Encoder(str(model), max_length=args.max_length, verbose=False,
                                 dtype=args.dtype)
    lengths = np.array([len(i) for i in encoder._tokenize(passages[:2000])])
    results["tokens_per_passage_mean"] = float(lengths.mean())
    params = sum(p.numel() for n, p in encoder.model.named_parameters() if "embeddings" not in n)
    layers, width = encoder.model.config.num_hidden_layers, encoder.model.config.hidden_size

    def flops(n):  # matmuls of the layers and of attention, for n passages of mean length
        return n * (2 * params * lengths.mean() + 4 * layers * width * (lengths ** 2).mean())

    encoder.encode(passages[:256])  # warm-up
    sync()
    start = time.time()
    dense.build_index(({"docno": str(i), "text": t} for i, t in enumerate(passages[:docs_n])),
                      encoder, tmp / "ours", chunk_docs=100_000)
    sync()
    seconds = time.time() - start
    results["ours"] = {"passages": docs_n, "seconds": seconds, "passages_per_s": docs_n / seconds,
                       "tokens_per_s": docs_n * lengths.mean() / seconds,
                       "dtype": encoder.precision,
                       "batch_tokens": encoder.batch_tokens}
    if gpu:
        results["ours"]["fraction_of_bf16_peak"] = flops(docs_n) / seconds / PEAK
    print(f"ours ({encoder.precision}): {docs_n / seconds:,.0f} passages/s"
          + (f", {results['ours']['fraction_of_bf16_peak']:.0%} of the bf16 peak" if gpu else ""),
          flush=True)
    del encoder

    from pyterrier_dr import BGEM3, FlexIndex
    reference = BGEM3(model_name=str(model), batch_size=64, max_length=args.max_length,
                      use_fp16=False)
    sync()
    start = time.time()
    (reference.doc_encoder() >> FlexIndex(str(tmp / "ref"), verbose=False)).index(
        {"docno": str(i), "text": t} for i, t in enumerate(passages[:ref_docs_n]))
    sync()
    seconds = time.time() - start
    results["pyterrier_dr_fp32_bs64"] = {"passages": ref_docs_n, "seconds": seconds,
                                         "passages_per_s": ref_docs_n / seconds}
    results["indexing_speedup"] = results["ours"]["passages_per_s"] / (ref_docs_n / seconds)
    print(f"pyterrier-dr BGEM3 fp32 batch 64: {ref_docs_n / seconds:,.0f} passages/s -> ours is "
          f"{results['indexing_speedup']:.1f}x", flush=True)
    ours_vecs = np.asarray(FlexIndex(str(tmp / "ours")).payload()[1][:ref_docs_n])
    ref_vecs = np.asarray(FlexIndex(str(tmp / "ref")).payload()[1])
    results["min_cosine_vs_pyterrier_dr"] = float((ours_vecs * ref_vecs).sum(1).min())
    print(f"smallest cosine between the two indexes' vectors: "
          f"{results['min_cosine_vs_pyterrier_dr']:.5f}", flush=True)

    # search over random unit vectors
    rng = np.random.default_rng(0)
    dim = 1024
    index = tmp / "search"
    block = 500_000

    def vectors(n):  # (docnos, unit vectors) blocks, written whole (8.8M in a minute or two)
        for b in range(0, n, block):
            v = rng.standard_normal((min(block, n - b), dim), dtype=np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            yield np.arange(b, b + len(v)).astype(str), v

    dense.write_flex_index(index, vectors(search_n))
    q = rng.standard_normal((args.queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    topics = pd.DataFrame({"qid": [str(i) for i in range(args.queries)], "query_vec": list(q)})
    search = dense.TorchSearch(index, num_results=1000)
    search(topics.iloc[:8])
    sync()
    start = time.time()
    ours = search(topics)
    sync()
    seconds = time.time() - start
    results["search_ours"] = {"docs": search_n, "queries": args.queries, "seconds": seconds}
    print(f"search, ours ({search.device}): {args.queries} queries x {search_n:,} docs in "
          f"{seconds:.2f}s", flush=True)
    del search
    sub = tmp / "search-sub"
    if ref_search_n < search_n:
        rng = np.random.default_rng(0)  # the same first vectors
        dense.write_flex_index(sub, vectors(ref_search_n))
    else:
        sub = index
    ref_queries = topics.iloc[:min(args.queries, 1000)]
    start = time.time()
    reference = FlexIndex(str(sub), verbose=False).np_retriever(num_results=1000)(ref_queries)
    seconds = time.time() - start
    scaled = seconds * (search_n / ref_search_n) * (args.queries / len(ref_queries))
    results["search_np_retriever"] = {"docs": ref_search_n, "queries": len(ref_queries),
                                      "seconds": seconds,
                                      "seconds_scaled_to_full": scaled}
    results["search_speedup"] = scaled / results["search_ours"]["seconds"]
    print(f"search, np_retriever: {len(ref_queries)} queries x {ref_search_n:,} docs in "
          f"{seconds:.2f}s (scaled to the full task: {scaled:.1f}s) -> ours is "
          f"{results['search_speedup']:.1f}x", flush=True)
    if sub == index:
        a = reference[reference["rank"] < 10].groupby("qid").docno.apply(set)
        b = ours[ours["rank"] < 10].groupby("qid").docno.apply(set)
        results["top10_overlap"] = float(np.mean([len(a[k] & b[k]) / 10 for k in a.index]))
        print(f"top-10 overlap with np_retriever: {results['top10_overlap']:.4f}")
if args.out:
    Path(args.out).write_text(json.dumps(results, indent=1))
print(json.dumps(results, indent=1))
