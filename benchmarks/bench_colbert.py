"""Benchmark: ColBERT-XM PLAID indexing and search, ours vs colbert-ai 0.2.22, in one run.

A ColBERT-XM checkpoint at random weights (tiny X-MOD on a CPU, "lexical" so that rankings have
clear winners; X-MOD base, ColBERT-XM's architecture, with --size base) indexes synthetic
passages of mMARCO-like length, once with index_colbertxm.py's path (crossvariety.families.plaid) and once
with colbert-ai's Indexer (nbits 2, the same checkpoint and adapter), then both search the same
queries at k=1000 with colbert-ai's defaults for large k. Prints, for both: encoding passages/s
(the model alone) and indexing passages/s (the whole path: codec sample, k-means, encoding,
compression, merge), index bytes per passage, search queries/s; and the top-10 overlap of each
engine with exhaustive MaxSim and with each other.

Our search is also timed on the whole --docs index (--search-queries queries, one at a time as
PlaidSearch runs them) and extrapolated to --extrapolate-docs passages and --extrapolate-queries
queries (mMARCO: 8.8M, dev/small's 6,980). The method: PLAID's work per query grows with the
number of centroids (the centroid scores; colbert-ai's 2^floor(log2(16 sqrt(#vectors)))) and
with the vectors per centroid (the probed cells' passages, scored by their centroids); the two
last stages score a fixed 4,096 and 1,024 candidates. The whole measured time per query is
scaled by the larger of the two growth factors: an upper bound under this model (the fixed
stages and the launch overheads are scaled too); the linear bound (times the passage ratio) is
printed beside it. With --out the JSON is rewritten after every measurement.

  python benchmarks/bench_colbert.py                          # tiny, CPU, a few minutes
  python benchmarks/bench_colbert.py --size base --docs 200000 --ref-docs 20000   # on a GPU
  python benchmarks/bench_colbert.py --size base --reference off   # ours alone (no colbert-ai)
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

from common import GPU as gpu, Results, random_model, sync
from crossvariety.families import plaid, plaid_search
from crossvariety.families.colbert import ColBERTXMEncoder
from crossvariety.neural.random_models import synthetic_passages

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--size", choices=["tiny", "base"], default="tiny")
parser.add_argument("--docs", type=int, default=0, help="passages for our path")
parser.add_argument("--ref-docs", type=int, default=0,
                    help="passages for colbert-ai's path, our encoding alone and the overlaps")
parser.add_argument("--reference", choices=["on", "off"], default="on",
                    help="colbert-ai's indexer and searcher (off: ours alone; colbert-ai "
                    "compiles its extensions on first use, a minute or two)")
parser.add_argument("--queries", type=int, default=200,
                    help="queries of the overlaps and of colbert-ai's search")
parser.add_argument("--search-queries", type=int, default=0,
                    help="queries timed on the whole --docs index (default: --queries)")
parser.add_argument("--extrapolate-docs", type=int, default=8_800_000)
parser.add_argument("--extrapolate-queries", type=int, default=6980)
parser.add_argument("--k", type=int, default=1000)
parser.add_argument("--out", default="", help="also write the results as JSON here")
args = parser.parse_args()
docs_n = args.docs or (200_000 if gpu else 3000)
ref_docs_n = args.ref_docs or (20_000 if gpu else 3000)
results = Results(args.out, size=args.size, k=args.k)


def overlap(a, b, depth=10):
    return float(np.mean([len(set(x[:depth]) & set(y[:depth])) / depth for x, y in zip(a, b)]))


def extrapolate(index_dir, seconds_per_query):
    """Our search time for --extrapolate-queries queries over --extrapolate-docs passages, from
    the time per query on ``index_dir`` (the method in the module's doc)."""
    meta = json.loads((Path(index_dir) / "meta.json").read_text())
    ratio = args.extrapolate_docs / meta["num_docs"]
    vectors = meta["num_vectors"] * ratio
    centroids = plaid.num_partitions(vectors)
    centroid_growth = centroids / meta["num_centroids"]
    cell_growth = (vectors / centroids) / (meta["num_vectors"] / meta["num_centroids"])
    queries_seconds = seconds_per_query * args.extrapolate_queries
    results["search_extrapolated"] = {
        "docs": args.extrapolate_docs, "queries": args.extrapolate_queries,
        "measured_on_docs": meta["num_docs"], "measured_seconds_per_query": seconds_per_query,
        "centroids": centroids, "centroid_growth": centroid_growth, "cell_growth": cell_growth,
        "seconds": queries_seconds * max(centroid_growth, cell_growth, 1.0),
        "seconds_linear_bound": queries_seconds * ratio,
        "method": "time per query on the measured index x the larger growth factor of the "
                  "centroids (colbert-ai's count) and of the vectors per centroid"}
    print(f"search extrapolated to {args.extrapolate_queries:,} queries over "
          f"{args.extrapolate_docs:,} passages: {results['search_extrapolated']['seconds']:.1f}s "
          f"(centroids x{centroid_growth:.1f}, vectors per centroid x{cell_growth:.1f}; linear "
          f"bound {results['search_extrapolated']['seconds_linear_bound']:.1f}s)", flush=True)


def colbert_ai(tmp, model, ref_passages, our_top, exact):
    """colbert-ai's Indexer and Searcher on ``ref_passages``, nbits 2, its defaults for k."""
    from colbert import Indexer, Searcher
    from colbert.infra import ColBERTConfig, Run, RunConfig
    from colbert.modeling.checkpoint import Checkpoint
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
        results["ref_index_passages_per_s"] = len(ref_passages) / (time.time() - start)
        searcher = Searcher(index="ref", config=config, verbose=0)
        ref_index = Path(searcher.index)
        results["ref_index_bytes_per_passage"] = sum(
            p.stat().st_size for p in ref_index.iterdir() if p.is_file()) / len(ref_passages)
        searcher.search(queries[0], k=args.k)  # warm-up
        start = time.time()
        ref_top = [searcher.search(q, k=args.k)[0] for q in queries]
        results["ref_search_queries_per_s"] = len(queries) / (time.time() - start)
    results["top10_overlap_ref_vs_exhaustive"] = overlap(ref_top, exact)
    results["top10_overlap_ours_vs_ref"] = overlap(our_top, ref_top)
    for key in ("index", "search"):
        unit = "passages" if key == "index" else "queries"
        results[f"{key}_ratio_ours_vs_ref"] = (results[f"ours_{key}_{unit}_per_s"] /
                                               results[f"ref_{key}_{unit}_per_s"])


passages = synthetic_passages(max(docs_n, ref_docs_n), seed=0)
queries = [" ".join(p.split()[3:9]) for p in passages[:args.queries]]
search_queries = [" ".join(p.split()[3:9]) for p in
                  passages[:args.search_queries or args.queries]]
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    model = random_model("colbert_xm", args.size, tmp, lexical=args.size == "tiny")
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

    # 2. our search on the whole index, timed and extrapolated
    search = plaid_search.PlaidSearch(tmp / "ours", num_results=args.k, verbose=False)
    start = time.time()
    query_vectors = encoder.encode_queries(search_queries)
    sync()
    results["ours_query_encode_queries_per_s"] = len(search_queries) / (time.time() - start)
    search.search(query_vectors[0], args.k)  # warm-up
    sync()
    start = time.time()
    for Q in query_vectors:
        search.search(Q, args.k)
    sync()
    seconds = time.time() - start
    results["ours_search_full_index"] = {"docs": docs_n, "queries": len(search_queries),
                                         "seconds": seconds,
                                         "queries_per_s": len(search_queries) / seconds}
    extrapolate(tmp / "ours", seconds / len(search_queries))
    del search

    # 3. ours and colbert-ai on the first ref_docs_n passages, against exhaustive MaxSim
    same = tmp / "ours"
    if ref_docs_n != docs_n:
        same = tmp / "same"
        plaid.build_index(lambda: ({"docno": str(i), "text": t}
                                   for i, t in enumerate(passages[:ref_docs_n])), encoder, same)
    search = plaid_search.PlaidSearch(same, num_results=args.k, verbose=False)
    query_vectors = encoder.encode_queries(queries)
    search.search(query_vectors[0], args.k)  # warm-up
    sync()
    start = time.time()
    our_top = [search.search(Q, args.k)[0].tolist() for Q in query_vectors]
    sync()
    results["ours_search_queries_per_s"] = len(queries) / (time.time() - start)
    exact = [plaid_search.exhaustive_search(Q.cpu(), vectors.cpu(), lengths, 10)[0].tolist()
             for Q in query_vectors]
    results["top10_overlap_ours_vs_exhaustive"] = overlap(our_top, exact)
    results["ref_docs"], results["docs"], results["queries"] = ref_docs_n, docs_n, len(queries)
    if args.reference == "on":
        colbert_ai(tmp, model, passages[:ref_docs_n], our_top, exact)
results.finish()
