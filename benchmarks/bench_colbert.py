"""Benchmark: ColBERT-XM PLAID indexing and search, ours vs colbert-ai 0.2.22, in one run.

A ColBERT-XM checkpoint at random weights (tiny X-MOD on a CPU, "lexical" so that rankings have
clear winners; X-MOD base, ColBERT-XM's architecture, with --size base) indexes synthetic
passages of mMARCO-like length, once with index_colbertxm.py's path (crossvariety.plaid) and once
with colbert-ai's Indexer (nbits 2, the same checkpoint and adapter), then both search the same
queries at k=1000 with colbert-ai's defaults for large k. Prints, for both: encoding passages/s
(the model alone) and indexing passages/s (the whole path: codec sample, k-means, encoding,
compression, merge), index bytes per passage, search queries/s; and the top-10 overlap of each
engine with exhaustive MaxSim and with each other.

  python benchmarks/bench_colbert.py                          # tiny, CPU, a few minutes
  python benchmarks/bench_colbert.py --size base --docs 200000 --ref-docs 20000   # on a GPU
colbert-ai JIT-compiles its C++ (and on a GPU its CUDA) extensions on first use: a compiler and
ninja are needed, and the first run spends a minute or two on it (not timed).
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from crossvariety import plaid
from crossvariety.colbert import ColBERTXMEncoder
from crossvariety.random_models import build_colbert_xm, synthetic_passages

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--size", choices=["tiny", "base"], default="tiny")
parser.add_argument("--docs", type=int, default=0, help="passages for our path")
parser.add_argument("--ref-docs", type=int, default=0, help="passages for colbert-ai's path")
parser.add_argument("--queries", type=int, default=200)
parser.add_argument("--k", type=int, default=1000)
parser.add_argument("--out", default="", help="also write the results as JSON here")
args = parser.parse_args()
gpu = torch.cuda.is_available()
docs_n = args.docs or (200_000 if gpu else 3000)
ref_docs_n = args.ref_docs or (20_000 if gpu else 3000)
results = {"size": args.size, "device": torch.cuda.get_device_name() if gpu else
           f"cpu ({torch.get_num_threads()} threads)", "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d"), "k": args.k}


def sync():
    if gpu:
        torch.cuda.synchronize()


def overlap(a, b, depth=10):
    return float(np.mean([len(set(x[:depth]) & set(y[:depth])) / depth for x, y in zip(a, b)]))


passages = synthetic_passages(max(docs_n, ref_docs_n), seed=0)
queries = [" ".join(p.split()[3:9]) for p in passages[:args.queries]]
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    model = build_colbert_xm(tmp / "colbert-xm", passages[:5000], size=args.size,
                             vocab_size=8000, lexical=args.size == "tiny")
    # the checkpoint's saved adapter for both engines: colbert-ai encodes with it
    encoder = ColBERTXMEncoder(model, verbose=False)
    results["encoder"] = {"dtype": encoder.precision, "batch_tokens": encoder.batch_tokens}

    # 1. ours: encoding alone, then the whole indexing path
    encoder.encode_docs(passages[:256])  # warm-up
    sync()
    start = time.time()
    vectors, lengths = encoder.encode_docs(passages[:ref_docs_n])
    sync()
    results["ours_encode_passages_per_s"] = ref_docs_n / (time.time() - start)
    results["tokens_per_passage_kept_mean"] = float(lengths.mean())
    start = time.time()
    plaid.build_index(lambda: ({"docno": str(i), "text": t}
                               for i, t in enumerate(passages[:docs_n])), encoder, tmp / "ours",
                      total=docs_n)
    sync()
    results["ours_index_passages_per_s"] = docs_n / (time.time() - start)
    results["ours_index_bytes_per_passage"] = plaid.index_bytes(tmp / "ours") / docs_n
    print(json.dumps(results, indent=1), flush=True)

    # 2. colbert-ai on the first ref_docs_n passages (and ours again on the same ones)
    from colbert import Indexer, Searcher
    from colbert.infra import ColBERTConfig, Run, RunConfig
    from colbert.modeling.checkpoint import Checkpoint
    ref_passages = passages[:ref_docs_n]
    config = ColBERTConfig(nbits=2, doc_maxlen=256, query_maxlen=32, kmeans_niters=4,
                           root=str(tmp / "experiments"), avoid_fork_if_possible=True)
    os.environ.setdefault("COLBERT_LOAD_TORCH_EXTENSION_VERBOSE", "False")
    with Run().context(RunConfig(nranks=1, experiment="bench", root=str(tmp / "experiments"),
                                 avoid_fork_if_possible=True)):
        Checkpoint(str(model), colbert_config=config, verbose=0)  # compiles extensions, untimed
        sync()
        start = time.time()
        Indexer(checkpoint=str(model), config=config, verbose=0).index(
            name="ref", collection=ref_passages, overwrite=True)
        sync()
        results["ref_index_passages_per_s"] = ref_docs_n / (time.time() - start)
        searcher = Searcher(index="ref", config=config, verbose=0)
        ref_index = Path(searcher.index)
        results["ref_index_bytes_per_passage"] = sum(
            p.stat().st_size for p in ref_index.iterdir() if p.is_file()) / ref_docs_n
        searcher.search(queries[0], k=args.k)  # warm-up
        start = time.time()
        ref_top = [searcher.search(q, k=args.k)[0] for q in queries]
        results["ref_search_queries_per_s"] = len(queries) / (time.time() - start)

    same = tmp / "ours"
    if ref_docs_n != docs_n:
        same = tmp / "same"
        plaid.build_index(lambda: ({"docno": str(i), "text": t}
                                   for i, t in enumerate(ref_passages)), encoder, same)
    search = plaid.PlaidSearch(same, num_results=args.k, verbose=False)
    query_vectors = encoder.encode_queries(queries)
    search.search(query_vectors[0], args.k)  # warm-up
    sync()
    start = time.time()
    our_top = [search.search(Q, args.k)[0].tolist() for Q in query_vectors]
    sync()
    results["ours_search_queries_per_s"] = len(queries) / (time.time() - start)
    exact = [plaid.exhaustive_search(Q.cpu(), vectors.cpu(), lengths, 10)[0].tolist()
             for Q in query_vectors]
    results["top10_overlap_ours_vs_exhaustive"] = overlap(our_top, exact)
    results["top10_overlap_ref_vs_exhaustive"] = overlap(ref_top, exact)
    results["top10_overlap_ours_vs_ref"] = overlap(our_top, ref_top)
    results["ref_docs"], results["docs"], results["queries"] = ref_docs_n, docs_n, len(queries)
    for key in ("index", "search"):
        unit = "passages" if key == "index" else "queries"
        results[f"{key}_ratio_ours_vs_ref"] = (results[f"ours_{key}_{unit}_per_s"] /
                                               results[f"ref_{key}_{unit}_per_s"])
print(json.dumps(results, indent=1))
if args.out:
    Path(args.out).write_text(json.dumps(results, indent=1))
