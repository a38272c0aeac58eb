"""Benchmark: the cost of BM25's analyses (words, character 4-grams, uroman + 4-grams) in one run
on the same documents: index build docs/s, index bytes per document, query latency.

Documents are mMARCO-like passages (3 sentences, ~70 words) built from FLORES-200 devtest
sentences of 20 languages in 4 scripts (Latin, Cyrillic, Arabic; seeded sampling), so that
vocabulary and romanisation work are realistic; queries are Catalan FLORES sentences. Printed
and written as JSON (--out): per analysis build seconds, docs/s, bytes/doc, queries/s, and the
extrapolation to mMARCO French (8.8M passages; 6,980 dev/small queries), which assumes build
time linear in documents and analysis spread over --cores-target cores (PISA's own inversion
step is measured apart: it is the part that does not use the analysis workers), and query time
linear in collection size (posting lists grow with it; an upper bound for WAND-pruned top-k).

The reference library path is timed in the same run (unless --no-reference) for words and
4-grams: pyterrier_pisa's toks indexer fed one {term: count} dict per document, analysed in the
same process, as one batch (its multi-batch build gets posting lists wrong beyond 100,000
documents); its index must equal ours byte for byte, and the ratio is printed.

  python benchmarks/bench_bm25.py                          # 200,000 passages, 2 cores
  python benchmarks/bench_bm25.py --passages 50000 --out bm25.json
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from crossvariety.families import bm25
from crossvariety.data import flores

LANGS = ["fra_Latn", "cat_Latn", "oci_Latn", "ita_Latn", "scn_Latn", "spa_Latn", "por_Latn",
         "glg_Latn", "nld_Latn", "afr_Latn", "deu_Latn", "ind_Latn", "zsm_Latn", "eng_Latn",
         "gla_Latn", "hrv_Latn", "srp_Cyrl", "rus_Cyrl", "arb_Arab", "ary_Arab"]
ANALYSES = {"bm25": {}, "bm25-char4": {"ngram": 4},
            "bm25-uroman-char4": {"ngram": 4, "romanize": True}}
MMARCO_FR, DEV_SMALL = 8_841_823, 6980

parser = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--passages", type=int, default=200_000)
parser.add_argument("--queries", type=int, default=1012)
parser.add_argument("--workers", type=int, default=0, help="analysis processes; 0 = all cores")
parser.add_argument("--cores-target", type=int, default=16, help="cores of the extrapolation")
parser.add_argument("--analyses", nargs="+", default=list(ANALYSES), choices=list(ANALYSES))
parser.add_argument("--flores-dir", default=str(flores.SHARED_COPY))
parser.add_argument("--out", default="")
parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                    help="also time pyterrier_pisa's toks indexer (words, 4-grams)")
args = parser.parse_args()

rng = random.Random(0)
sentences = {code: flores.read_sentences(args.flores_dir, code) for code in LANGS}
docs = []
for i in range(args.passages):
    lang = LANGS[i % len(LANGS)]
    docs.append({"docno": f"p{i}", "text": " ".join(rng.choice(sentences[lang]) for _ in range(3))})
queries = pd.DataFrame({"qid": [str(i) for i in range(args.queries)],
                        "query": (flores.read_sentences(args.flores_dir, "cat_Latn") * 10)[:args.queries]})
workers = args.workers or os.cpu_count()
results = {"passages": args.passages, "queries": args.queries, "workers": workers,
           "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "analyses": {}}
tmp = Path(tempfile.mkdtemp(prefix="bench_bm25."))
try:
    for label in args.analyses:
        options = ANALYSES[label]
        index = tmp / label
        bm25.analysis.get_analyzer.cache_clear()
        bm25.analysis.romanizer.cache_clear()  # uroman's word cache starts empty, as in a real build
        start = time.time()
        bm25.build_index(iter(docs), "fr", index, workers=workers, total=len(docs), **options)
        build = time.time() - start
        # the analysis alone, on one core, on a sample: what more cores divide
        analyzer = bm25._analyzer(bm25.analysis.spec("fr", **options))
        sample = docs[:5000]
        start = time.time()
        for d in sample:
            analyzer.counts(d["text"])
        analysis_s = (time.time() - start) / len(sample) * len(docs)
        size = sum(f.stat().st_size for f in index.rglob("*") if f.is_file())
        reference_s = None
        if args.reference and not options.get("romanize"):
            import filecmp
            from pyterrier_pisa import PisaIndex
            start = time.time()
            with bm25.pisa_quiet():
                PisaIndex(str(tmp / "reference"), stemmer="none", stops="none",
                          batch_size=len(docs) + 1).toks_indexer(scale=1).index(
                    {"docno": d["docno"], "toks": analyzer.counts(d["text"])} for d in docs)
            reference_s = time.time() - start
            names = {f.name for f in index.iterdir()} - {bm25.META}
            assert names == {f.name for f in (tmp / "reference").iterdir()}, names
            different = [name for name in names if not filecmp.cmp(
                index / name, tmp / "reference" / name, shallow=False)]
            assert not different, f"our index differs from pyterrier_pisa's: {different}"
            shutil.rmtree(tmp / "reference")
        start = time.time()
        retriever = bm25.bm25_retriever(index, num_results=1000, threads=workers)
        bounds = time.time() - start
        retriever(queries.head(20))  # warm
        start = time.time()
        retriever(queries)
        query_s = time.time() - start
        # extrapolation: analysis over --cores-target cores + the rest of the build (PISA's
        # inversion, reading, pipes) as measured, both linear in documents
        rest = max(build - analysis_s / workers, 0.0)
        scale = MMARCO_FR / len(docs)
        est_build = (analysis_s / args.cores_target + rest) * scale
        row = {"build_s": round(build, 1), "docs_per_s": round(len(docs) / build),
               "analysis_core_s": round(analysis_s, 1), "bytes_per_doc": round(size / len(docs)),
               "bounds_s": round(bounds, 2), "queries_per_s": round(len(queries) / query_s, 1),
               "ms_per_query": round(query_s / len(queries) * 1000, 2),
               "est_mmarco_fr_build_h": round(est_build / 3600, 2),
               "est_mmarco_fr_index_gb": round(size / len(docs) * MMARCO_FR / 1e9, 2),
               "est_dev_small_s": round(query_s / len(queries) * DEV_SMALL * scale, 1)}
        if reference_s:
            row.update(reference_build_s=round(reference_s, 1),
                       speedup_vs_reference=round(reference_s / build, 2))
        results["analyses"][label] = row
        print(label, json.dumps(row), flush=True)
        shutil.rmtree(index)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
word = results["analyses"].get("bm25")
if word:
    for label, row in results["analyses"].items():
        row["build_vs_words"] = round(row["build_s"] / word["build_s"], 2)
print(json.dumps(results, indent=1))
if args.out:
    Path(args.out).write_text(json.dumps(results, indent=1))
