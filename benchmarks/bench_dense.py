"""Benchmark: BGE-M3 indexing and exhaustive search, ours vs pyterrier-dr, in one run.

Indexing: a BGE-M3-architecture encoder at random weights (tiny XLM-R on a CPU; XLM-R large, as
BGE-M3, with --size large) encodes synthetic passages of mMARCO-like length into a FlexIndex,
once with pyterrier-dr (``BGEM3(...).doc_encoder() >> FlexIndex``, fp32, batch 64: the original
path) and with index_bgem3.py's path (crossvariety.families.dense.build_index: tokenisation, chunk
files and the merge included), compiled (its compilation timed apart, on a warm-up sample) and
eager, and on a GPU with fp8 tensor cores also compiled in fp8. Prints passages/s, tokens/s
(also of the model alone, on the same batches tokenised beforehand), the fraction of the bf16
peak (GPU), the ratios, and the smallest cosine between our and pyterrier-dr's vectors.

Search: --queries random unit queries over --search-docs random unit vectors (made on the
device: writing 8.8M vectors to disk is not what is measured), top-1000; our TorchSearch (fp16
on a GPU) as a whole (the run frame included) and its matmul + top-k alone; pyterrier-dr's
np_retriever on --ref-search-docs vectors and 1,000 queries, its time scaled to the full task,
and the overlap of the two top-10s where both searched the same vectors.

--parts encode or search runs one of the two (benchmarks/gpu_suite.py gives each its own time
limit). With --out the JSON is rewritten after every measurement (a run stopped early keeps what
it measured).

  python benchmarks/bench_dense.py                       # tiny, CPU, a few minutes
  python benchmarks/bench_dense.py --size large --out dense_large.json   # on a GPU
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
import pyterrier_dr  # noqa: F401  (imported before any timing: it imports FlagEmbedding, ~1 s)
import torch
from torch._dynamo.utils import counters

from common import BF16_PEAK, GPU as gpu, Results, error_text, random_model, sync
from crossvariety.families import dense
from crossvariety.neural import fp8
from crossvariety.neural.batching import padded_batches
from crossvariety.neural.random_models import synthetic_passages
from crossvariety.neural.tokens import FlatTokenizer

VARIANTS = {"compiled": (None, "on"), "eager": (None, "off"), "compiled_fp8": ("fp8", "on")}
parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--size", choices=["tiny", "large"], default="tiny")
parser.add_argument("--docs", type=int, default=0, help="passages for our indexing path")
parser.add_argument("--ref-docs", type=int, default=0, help="passages for pyterrier-dr's path")
parser.add_argument("--warmup-docs", type=int, default=0,
                    help="passages encoded first by the compiled path (its compilation)")
parser.add_argument("--max-length", type=int, default=1024)
parser.add_argument("--dtype", default="auto", help="our precision: auto, bf16, fp32 or fp8")
parser.add_argument("--parts", default="encode,search", help="encode, search or both")
parser.add_argument("--variants", default="",
                    help="our encoders to measure, comma-separated, of " + ", ".join(VARIANTS) +
                    " (default: all; compiled_fp8 only on a GPU with fp8 tensor cores, "
                    "elsewhere it is emulated)")
parser.add_argument("--compile-backend", default="inductor",
                    help="torch.compile's backend for the compiled variants (aot_eager or eager: "
                    "graph capture without generated code; a quick check on a CPU)")
parser.add_argument("--search-docs", type=int, default=0, help="vectors in the search benchmark")
parser.add_argument("--ref-search-docs", type=int, default=0,
                    help="vectors for np_retriever (slow; its time is scaled to --search-docs)")
parser.add_argument("--queries", type=int, default=6980)
parser.add_argument("--ref-search-queries", type=int, default=1000,
                    help="queries for np_retriever (its time is scaled to --queries)")
parser.add_argument("--out", default="", help="also write the results as JSON here")
args = parser.parse_args()
parts = args.parts.split(",")
if not parts or set(parts) - {"encode", "search"}:
    parser.error(f"--parts {args.parts}: choose encode, search or encode,search")
variants = args.variants.split(",") if args.variants else [
    key for key in VARIANTS if key != "compiled_fp8" or
    (gpu and args.dtype != "fp8" and fp8.supported(torch.device("cuda")))]
if set(variants) - set(VARIANTS):
    parser.error(f"--variants {args.variants}: choose among {', '.join(VARIANTS)}")
docs_n = args.docs or (40000 if gpu else 3000)
ref_docs_n = args.ref_docs or (4000 if gpu else 1000)
warmup_n = args.warmup_docs or (8000 if gpu else 500)
search_n = args.search_docs or (8_800_000 if gpu else 200_000)
ref_search_n = args.ref_search_docs or min(search_n, 500_000 if gpu else 200_000)
results = Results(args.out, size=args.size)


def encoding(tmp):
    """pyterrier-dr's and our indexing paths (each variant), and their vectors compared."""
    passages = synthetic_passages(max(docs_n, ref_docs_n) + warmup_n, seed=0)
    warmup, passages = passages[-warmup_n:], passages[:-warmup_n]
    model = random_model("xlmr", args.size, tmp)
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    lengths = FlatTokenizer(AutoTokenizer.from_pretrained(model), args.max_length)(
        passages[:2000]).lengths
    results["tokens_per_passage_mean"] = float(lengths.mean())
    config = AutoConfig.from_pretrained(model)
    with torch.device("meta"):  # the parameter count without the weights
        shapes = AutoModel.from_config(config, add_pooling_layer=False)
    params = sum(p.numel() for n, p in shapes.named_parameters() if "embeddings" not in n)
    layers, width = config.num_hidden_layers, config.hidden_size

    def flops(n):  # matmuls of the layers and of attention, for n passages of mean length
        return n * (2 * params * lengths.mean() + 4 * layers * width * (lengths ** 2).mean())

    # 1. the reference (measured first: cheap, and the basis of the ratios)
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
    print(f"pyterrier-dr BGEM3 fp32 batch 64: {ref_docs_n / seconds:,.0f} passages/s", flush=True)
    del reference
    ref_vecs = np.asarray(FlexIndex(str(tmp / "ref")).payload()[1])

    # 2. ours
    def measure(key):
        dtype, compile_setting = VARIANTS[key]
        encoder = dense.BgeM3Encoder(str(model), max_length=args.max_length, verbose=False,
                                     dtype=dtype or args.dtype, compile=compile_setting)
        encoder.compiler.backend = args.compile_backend
        graphs = counters["stats"]["unique_graphs"]
        sync()
        start = time.time()
        encoder.encode(warmup)  # compilation (compiled path), first-call costs
        sync()
        record = {"warmup_passages": warmup_n, "warmup_seconds": time.time() - start,
                  "graphs_compiled_in_warmup": counters["stats"]["unique_graphs"] - graphs}
        graphs = counters["stats"]["unique_graphs"]
        start = time.time()
        dense.build_index(({"docno": str(i), "text": t} for i, t in enumerate(passages[:docs_n])),
                          encoder, tmp / key, chunk_docs=100_000)
        sync()
        seconds = time.time() - start
        record.update(passages=docs_n, seconds=seconds, passages_per_s=docs_n / seconds,
                      tokens_per_s=docs_n * lengths.mean() / seconds, dtype=encoder.precision,
                      fp8_tensor_cores=encoder.precision == "fp8" and
                      fp8.supported(encoder.device),
                      batch_tokens=encoder.batch_tokens,
                      compiled=bool(encoder.compiler.wanted(docs_n)),
                      graphs_compiled_while_timed=counters["stats"]["unique_graphs"] - graphs,
                      tokenizer_workers=encoder.tokenization.workers)
        # the model alone, on the same batches tokenised beforehand: what tokenisation, the
        # chunk files and the host's work cost the whole path
        prepared = encoder.tokenization.tokenize(passages[:docs_n])
        cls_vectors = encoder.compiler.for_job(docs_n)
        with torch.inference_mode():
            sync()
            start = time.time()
            for batch in padded_batches(prepared, encoder.tokenizer.pad_token_id,
                                        encoder.batch_tokens, encoder.device):
                cls_vectors(batch.input_ids, batch.attention_mask)
            sync()
        record["model_only_passages_per_s"] = docs_n / (time.time() - start)
        if gpu:
            record["fraction_of_bf16_peak"] = flops(docs_n) / seconds / BF16_PEAK
            record["model_only_fraction_of_bf16_peak"] = \
                flops(1) * record["model_only_passages_per_s"] / BF16_PEAK
        ours_vecs = np.asarray(FlexIndex(str(tmp / key)).payload()[1][:ref_docs_n])
        record["min_cosine_vs_pyterrier_dr"] = float((ours_vecs * ref_vecs).sum(1).min())
        print(f"{key} ({encoder.precision}): {docs_n / seconds:,.0f} passages/s"
              + (f", {record['fraction_of_bf16_peak']:.0%} of the bf16 peak" if gpu else "")
              + f"; the model alone {record['model_only_passages_per_s']:,.0f} passages/s"
              + f" (warm-up {record['warmup_seconds']:.0f}s); smallest cosine with "
              f"pyterrier-dr's vectors {record['min_cosine_vs_pyterrier_dr']:.5f}", flush=True)
        return record

    for key in variants:
        try:  # one failing variant (a compiler, fp8 kernels) must not lose the others
            results[key] = measure(key)
        except Exception as error:
            results[key] = {"error": error_text(error)}
            print(f"{key}: failed: {results[key]['error'][:300]}", flush=True)
        if gpu:
            torch.cuda.empty_cache()
        done = [k for k in variants if "passages_per_s" in results.get(k, {})]
        if done:
            if key != "eager" and key in done and "eager" in done:
                results[f"{key}_vs_eager"] = results[key]["passages_per_s"] / \
                    results["eager"]["passages_per_s"]
            results["best_vs_pyterrier_dr"] = max(results[k]["passages_per_s"] for k in done) / \
                results["pyterrier_dr_fp32_bs64"]["passages_per_s"]
    if "best_vs_pyterrier_dr" in results:
        print(f"our best vs pyterrier-dr: {results['best_vs_pyterrier_dr']:.1f}x", flush=True)


def searching(tmp):
    """Exhaustive search over random unit vectors made on the device: ours, then np_retriever on
    a part of them (its time scaled)."""
    from pyterrier_dr import FlexIndex
    dim = 1024
    device = torch.device("cuda" if gpu else "cpu")
    generator = torch.Generator(device=device).manual_seed(0)
    vectors = torch.empty((search_n, dim), device=device,
                          dtype=torch.float16 if gpu else torch.float32)
    for b in range(0, search_n, 1_000_000):
        block = torch.randn((min(1_000_000, search_n - b), dim), device=device,
                            generator=generator)
        vectors[b:b + len(block)] = torch.nn.functional.normalize(block, dim=1)
    docnos = np.arange(search_n).astype(str)
    q = torch.nn.functional.normalize(torch.randn((args.queries, dim), device=device,
                                                  generator=generator), dim=1).cpu().numpy()
    topics = pd.DataFrame({"qid": [str(1_000_000 + i) for i in range(args.queries)],
                           "query_vec": list(q)})
    search = dense.TorchSearch.from_vectors(docnos, vectors, num_results=1000)
    search(topics.iloc[:8])
    sync()
    start = time.time()
    ours = search(topics)
    sync()
    seconds = time.time() - start
    with torch.inference_mode():  # the device's part alone: matmul + top-k, no host work
        start = time.time()
        for b in range(0, args.queries, search.query_batch):
            block = torch.from_numpy(q[b:b + search.query_batch]).to(device, vectors.dtype)
            torch.topk(block @ vectors.T, 1000, dim=1)
        sync()
        device_seconds = time.time() - start
    results["search_ours"] = {"docs": search_n, "queries": args.queries, "seconds": seconds,
                              "matmul_topk_seconds": device_seconds,
                              "query_batch": search.query_batch}
    print(f"search, ours ({search.device}): {args.queries} queries x {search_n:,} docs, top-1000, "
          f"run frame included: {seconds:.2f}s (matmul + top-k alone: {device_seconds:.2f}s)",
          flush=True)
    del search
    sub = tmp / "search-sub"
    host_vectors = vectors[:ref_search_n].float().cpu().numpy()
    dense.write_flex_index(sub, [(docnos[:ref_search_n], host_vectors)])
    del vectors, host_vectors
    ref_queries = topics.iloc[:min(args.queries, args.ref_search_queries)]
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
    if ref_search_n == search_n:
        a = reference[reference["rank"] < 10].groupby("qid").docno.apply(set)
        b = ours[ours["rank"] < 10].groupby("qid").docno.apply(set)
        results["top10_overlap"] = float(np.mean([len(a[k] & b[k]) / 10 for k in a.index]))
        print(f"top-10 overlap with np_retriever: {results['top10_overlap']:.4f}")


with tempfile.TemporaryDirectory() as tmp:
    if "encode" in parts:
        encoding(Path(tmp))
    if "search" in parts:
        searching(Path(tmp))
results.finish()
