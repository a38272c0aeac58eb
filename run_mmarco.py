"""High-resource vs low-resource-variety queries: mMARCO v2 dev/small, FLORES, your own data.

For each language pair (e.g. ca-fr: Catalan queries, French passages) this retrieves the top
NUM_RESULTS passages for the high-resource topics and for the variety's version of them (a query
file, same qids), analysing both with the high-resource analyzer as the paper did, and writes
one TREC run per query set. With --translate-queries ENGINE a third set, the variety queries
translated into the high-resource language, gives the translate-the-query baseline. The paper's
own variety queries of its seven pairs come from its released data (Hugging Face dataset
andreaschari/mmarco-lt) when the translations folder has no file for them; a file there always
wins. Run files:
  {runs_dir}/{dataset}.{model}.q-{queries}.retrieve.res.gz
With --rerank MODEL each run is re-ranked by mT5 (the paper's mT5 rows) into
  {runs_dir}/{dataset}.{model}.q-{queries}.rerank-{reranker}.res.gz
With --evaluate it prints MRR@10 and R@1000 of both and a paired t-test against the
high-resource queries (Bonferroni-corrected). Beside each run, {run}.json records what made it
(the collection's and queries' content hashes, the model's files or revision, every setting
that changes results); a finished run is reused only if its record matches (a deeper run serves
a shallower --num-results, truncated), else recomputed with a log line naming what changed, and
always with --overwrite. A missing BM25, BGE-M3 or ColBERT-XM index is built first (as
index_bm25.py, index_bgem3.py, index_colbertxm.py would); a BM25 index of another collection
or analysis is rebuilt; a neural index of other model files or another collection is an
error, rebuilt with --overwrite.

Pairs: the paper's seven (ca-fr oc-fr af-dt scn-it yue-zh ms-id gd-en; mMARCO dev/small), any
pair defined in the config file ([pairs.NAME] tables: variety, highres, collection, topics,
variety_queries, ...), or any VARIETY-HIGHRES of language codes (gl-pt, glg_Latn-por_Latn):
with --benchmark flores it needs nothing more, otherwise --collection and --topics give its data
(an irds: id or a folder with docs.tsv, queries.tsv, qrels.txt) and --variety-queries its
variety queries.

Examples:
  python run_mmarco.py --config configs/flores_bm25.toml          # the small default, all pairs
  python run_mmarco.py --benchmark flores --pairs glg_Latn-por_Latn ltz_Latn-deu_Latn --evaluate
  python run_mmarco.py --pairs ca-fr --model bm25 --evaluate      # mMARCO, needs the data
  python run_mmarco.py --pairs ca-fr --collection data/my-fr --topics data/my-fr \\
      --variety-queries data/my-fr.ca.tsv --evaluate              # your own collection
  python run_mmarco.py --config configs/flores_bm25.toml --translate-queries apertium
  python run_mmarco.py --pairs ca-fr --model bge-m3-lt-cafr --evaluate   # index_bgem3.py first
  python run_mmarco.py --pairs ca-fr --model bge-m3 --rerank mt5-lt-cafr --evaluate  # GPU
  python run_mmarco.py --pairs af-dt --model colbert-xm-lt-afdt --evaluate  # index_colbertxm.py first
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
BENCHMARK = "mmarco"  # mmarco: each pair's own collection and dev topics (the paper's pairs: mMARCO
                      # v2 dev/small, English: irds:msmarco-passage/dev/small; other pairs: their
                      # config table or --collection/--topics); flores: FLORES-200 devtest articles
                      # (offline)
PAIRS = ["ca-fr"]  # language pairs VARIETY-HIGHRES: ca-fr oc-fr af-dt scn-it yue-zh ms-id gd-en,
                   # pairs of the config's [pairs.NAME] tables, any two language codes (gl-pt) or
                   # FLORES-200 codes (glg_Latn-por_Latn), or all
MODEL = "bm25"  # first-stage ranker: bm25 (PISA, language-aware analysis); a BGE-M3 model: bge-m3,
                # bge-m3-lt-cafr, bge-m3-lt-afdt (dense search: on the GPU when there is one, else
                # pyterrier-dr's np_retriever); a ColBERT-XM model: colbert-xm, colbert-xm-lt-cafr,
                # colbert-xm-lt-afdt (PLAID, the adapter of the collection's language for queries
                # and documents); or an HF id or local path of either
COLLECTION = ""  # documents of every pair given: an irds: id or a dataset folder (docs.tsv[.gz] or
                 # docs.jsonl[.gz]); empty = each pair's own collection (mMARCO for the paper's
                 # pairs)
TOPICS = ""  # high-resource queries with qrels: an irds: id or a dataset folder (queries.tsv,
             # qrels.txt); empty = each pair's own topics, or those of --collection
VARIETY_QUERIES = ""  # query file (qid<TAB>query) of the variety, for a single pair; empty = the
                      # pair's variety_queries, else {translations_dir}/{topics}.{variety}.tsv
                      # (flores: built in)
CJK = "bigrams"  # BM25 terms of Chinese and Cantonese text: bigrams (Lucene's CJK analyzer, the
                 # paper's) or unigrams+bigrams (runs and index named bm25-unibi)
NGRAM = 0  # BM25 terms: 0 = words (stemmed, stop words removed: the paper's); 3, 4 or 5 = character
           # n-grams of words padded as _word_ (4 recommended; no stemming, no stop words;
           # Chinese/Cantonese keep their bigrams); runs and index named bm25-charN
ROMANIZE = False  # BM25: write queries and documents in Latin letters with uroman first (a variety
                  # written in another script: Serbian Cyrillic vs Croatian); every pair, or per
                  # pair with romanize = true in its [pairs.NAME] table; runs named bm25-uroman
SKELETON = False  # BM25: romanise, then drop the vowels of every word (consonant skeletons: where
                  # one side is an abjad, Arabic or Jawi, which spells few vowels); every pair, or
                  # per pair with skeleton = true; runs named bm25-uroman-skel
MAX_LENGTH = 1024  # BGE-M3: tokens per document (and per query); an index built with another length
                   # is an error (--overwrite rebuilds it)
DOC_LANG_FROM_CONFIG = False  # ColBERT-XM: encode documents with the checkpoint's saved
                              # default_language, as the original code did by accident (queries keep
                              # the collection's); runs and index named {model}-doclang-config
NUM_RESULTS = 1000  # passages retrieved per query
EVALUATE = False  # evaluate the runs against the qrels and print the gap table (metrics and
                  # significance)
MEASURES = []  # ir_measures measures for --evaluate; empty = MRR@10 R@1000
CORRECTION = "bonferroni"  # correction of the paired t-tests: bonferroni holm holm-sidak fdr_bh
                           # none
RERANK = ""  # re-rank every first-stage run with an mT5 model: mt5, mt5-lt-cafr, mt5-lt-afdt, an HF
             # id or a path (the table then reports the re-ranked runs)
RERANK_TOP_K = 1000  # documents of each first-stage ranking that --rerank re-ranks
TOKENIZER = ""  # tokenizer of the --rerank model (HF id or path); empty = the model's own, else
                # that of the model it was fine-tuned from (unicamp-dl/mt5-base-mmarco-v2: the
                # paper's mt5-lt-* checkpoints ship none)
TRANSLATE_QUERIES = ""  # translate-the-query baseline: a third query set per pair, the variety
                        # queries translated into the high-resource language by this engine
                        # (apertium: ca-fr oc-fr af-dt ms-id and any installed mode; opencc: yue-zh;
                        # hf: all)
TRANSLATION_MODEL = ""  # model of --translate-queries hf (name, HF id or path); empty =
                        # nllb-200-600m
WORKERS = 0  # analysis processes when a BM25 index must be built; 0 = all cores
DTYPE = "auto"  # precision of the neural models (encoders, re-ranker): auto = bf16 on a GPU, fp32
                # on a CPU; fp32 (the paper's); fp8 (matmuls on fp8 tensor cores, emulated
                # elsewhere); recorded in the run files (README: what bf16 costs)
OVERWRITE = False  # recompute the run files even if they exist and match, and rebuild a BGE-M3 or
                   # ColBERT-XM index that was built from other model files or another collection
                   # (without it such an index is an error; a current index is kept: index_bgem3.py
                   # / index_colbertxm.py --overwrite rebuild one anyway)
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import logging
import time
from pathlib import Path

import pandas as pd

from crossvariety import experiments, provenance, rerank
from crossvariety.data import flores, released, translation
from crossvariety.data.datasets import Dataset, read_queries, variety_queries_path, write_queries
from crossvariety.data.pairs import PAIRS as BUILT_IN, get_pairs
from crossvariety.errors import UsageError, UserError
from crossvariety.families import family_of, first_stage_names
from crossvariety.models import model_label, resolve_model
from crossvariety.neural import precision
from crossvariety.report import evaluation
from crossvariety.runs import cached_run, check_writable, run_path, write_text

log = logging.getLogger("run_mmarco")
# One line per pair (queries, runs, time) instead of these modules' line per file and index;
# what is not routine stays (a run recomputed and why, an index rebuilt, a download, warnings).
ROUTINE = {"crossvariety.runs": ("computed ", "wrote ", "reusing "),
           "crossvariety.data.flores": ("built ", "wrote "),
           "crossvariety.families.bm25": ("no BM25 index at ", "indexed ")}
reused = []  # finished run files reused, for the pair's line


def routine(record):
    if record.msg.startswith("reusing "):
        reused.append(record.args[0])
    return not str(record.msg).startswith(ROUTINE[record.name])


for name in ROUTINE:
    logging.getLogger(name).addFilter(routine)
if BENCHMARK not in ("mmarco", "flores"):
    raise UsageError(f"unknown benchmark {BENCHMARK!r}; choose mmarco or flores")
if TRANSLATE_QUERIES and TRANSLATE_QUERIES not in translation.ENGINES:
    raise UsageError(f"unknown engine {TRANSLATE_QUERIES!r}; choose from "
                     f"{', '.join(translation.ENGINES)}")
# an unknown name fails here, before any retrieval, listing the names the flag takes
if MODEL not in first_stage_names():
    resolve_model(MODEL, first_stage_names())
family = family_of(MODEL)  # an mT5 model as first stage fails here
for model in (RERANK, TOKENIZER):
    if model:
        resolve_model(model)
reranker = rerank.family_of(RERANK) if RERANK else None
pairs = get_pairs(PAIRS)
if VARIETY_QUERIES and len(pairs) != 1:
    raise UsageError("--variety-queries names the queries of one pair; pass one --pairs")
if BENCHMARK == "flores" and (COLLECTION or TOPICS):
    raise UsageError("--collection and --topics go with --benchmark mmarco; flores builds its own")
precision.check(DTYPE)  # torch is loaded only when a model runs

measures = MEASURES or evaluation.MMARCO_MEASURES
evaluation.parse_measures(measures)  # fail on a typo before hours of retrieval
check_writable(paths["runs_dir"], folder=True, option="--runs-dir")  # before, not after, the work
if TRANSLATE_QUERIES:
    check_writable(paths["translations_dir"], folder=True, option="--translations-dir")
# models neither cached nor reachable fail now, in seconds (one short probe of the hub)
family.check(MODEL)
s = experiments.settings_of(globals())
if family.NEURAL or RERANK:  # the precision the neural models run in, recorded in the runs
    s["dtype"] = precision.resolve(DTYPE)
dtype = s["dtype"] if family.NEURAL else None
if RERANK:
    reranker.check(RERANK, s)
retrievers = {}  # one retriever per collection, made only when a run must be computed


def retriever_for(collection, ps):
    """The first-stage retriever over a collection, its index built if it is missing (a stale
    BM25 index is rebuilt; a stale neural one is an error, or rebuilt with --overwrite). Called
    only when a run must be computed: re-evaluating finished runs loads no model or index."""
    key = (collection.spec, experiments.first_stage(ps))
    if key not in retrievers:
        retrievers[key] = family.retriever(MODEL, collection, paths["index_dir"], ps)
    return retrievers[key]


tables, topic_specs, collection_ids, problems = [], [], [], []
for pair in pairs:
    start, reused_before = time.time(), len(reused)
    # 1. the collection, its high-resource topics and the variety's version of them
    if BENCHMARK == "flores":
        source, codes = flores.find_flores(
            paths["flores_dir"], paths["data_dir"],
            [pair.flores_highres or pair.highres, pair.flores_variety or pair.variety])
        dataset_dir, variety_file = flores.build_flores(pair, source, codes, paths["data_dir"],
                                                        paths["translations_dir"])
        collection = topics = Dataset(dataset_dir)
    else:
        if not (COLLECTION or pair.collection):
            raise UsageError(f"pair {pair.name} has no collection: pass --collection and --topics "
                             "(irds: ids or dataset folders), define them in a "
                             f"[pairs.{pair.name}] table of the config, or use --benchmark flores")
        collection, topics = map(Dataset, pair.data(COLLECTION, TOPICS))
        variety_file = Path(pair.variety_queries) if pair.variety_queries else \
            variety_queries_path(paths["translations_dir"], topics.name, pair.variety)
    if VARIETY_QUERIES:
        variety_file = Path(VARIETY_QUERIES)
    highres_queries = topics.queries()
    if not variety_file.is_file():
        if BENCHMARK == "mmarco" and not VARIETY_QUERIES and pair.name in released.DEV_QUERIES \
                and topics.spec == BUILT_IN[pair.name].dev_topics:
            # the paper's own translations of these topics, from its released data
            released.install_queries(pair.name, variety_file, "dev", highres_queries.qid)
        elif BENCHMARK == "mmarco" and not VARIETY_QUERIES and \
                released.has_translit_queries(pair, topics.spec):
            # the follow-up's romanised queries (plain uroman, unsegmented), from its release
            released.install_translit_queries(topics.spec, variety_file,
                                              known_qids=highres_queries.qid)
        else:
            raise UserError(f"no {pair.variety} queries for {pair.name} at {variety_file}; put "
                            f"the {pair.variety} version of {topics.spec}'s queries there "
                            "(qid<TAB>query, same qids; translate_queries.py --pair can make "
                            "them) or pass --variety-queries FILE")
    lowres_queries = read_queries(variety_file, known_qids=highres_queries.qid)
    missing = sorted(set(highres_queries.qid) - set(lowres_queries.qid))
    if missing:
        raise UserError(f"{variety_file} lacks {len(missing)} of the {len(highres_queries)} qids "
                        f"of {topics.spec} (e.g. {', '.join(missing[:5])}); the comparison is "
                        "paired, so translate every query")
    qrels = topics.qrels() if EVALUATE else None  # a broken qrels file fails before the runs
    topic_specs.append(topics.spec)
    collection_ids.append(provenance.collection_id(collection))

    query_sets = [(pair.highres, highres_queries), (pair.variety, lowres_queries)]
    if TRANSLATE_QUERIES:
        translated_sets = experiments.gap_query_sets(pair, TRANSLATE_QUERIES)[2:]
        if translated_sets:
            label = translated_sets[0][0]
            translated_file = paths["translations_dir"] / f"{topics.name}.{label}.tsv.gz"
            # cached by content: only new or changed queries reach the engine
            translated = translation.translate_queries(
                lowres_queries, pair.variety, pair.highres, TRANSLATE_QUERIES,
                TRANSLATION_MODEL or None,
                cache_path=paths["data_dir"] / "translation-cache.sqlite")
            write_queries(translated, translated_file)
            query_sets.append((label, translated))
        else:
            log.warning("%s: %s does not translate %s->%s; no translated-query row", pair.name,
                        TRANSLATE_QUERIES, pair.variety, pair.highres)

    # 2. one run per query set (a finished run file is reused; the index is built on first use)
    ps = experiments.pair_settings(s, pair)
    first = experiments.first_stage(ps)
    runs = {}
    for label, queries in query_sets:
        path = run_path(paths["runs_dir"], topics.name, first, label, experiments.stage())
        runs[label] = cached_run(
            path, lambda: retriever_for(collection, ps)(queries), OVERWRITE, dtype,
            recipe=lambda: family.recipe(MODEL, collection, queries, paths["index_dir"], ps),
            depth=NUM_RESULTS, exact_depth=family.exact_depth(MODEL), optional=("index",))

    # 3. re-ranking of each first-stage run (the paper's mT5 rows)
    if RERANK:
        for label, queries in query_sets:
            path = run_path(paths["runs_dir"], topics.name, first, label,
                            experiments.stage(RERANK))
            runs[label] = cached_run(
                path, lambda: reranker.rerank(RERANK, runs[label], queries, collection, s),
                OVERWRITE, s["dtype"],
                recipe=lambda: reranker.recipe(RERANK, runs[label], queries, collection, s))

    # 4. the gap: variety (and translated) vs high-resource queries, paired over the same qids
    if EVALUATE:
        named = {f"{pair.name} q-{label}": run for label, run in runs.items()}
        table, _, found = evaluation.evaluate(named, qrels, measures, baseline=0,
                                              correction=CORRECTION)
        problems += found
        tables.append(table)
    again = len(reused) - reused_before
    log.info("%s: %d %s queries (%s), %d %s queries (%s): %d runs in %s%s (%.1fs)", pair.name,
             len(highres_queries), pair.highres, topics.spec, len(lowres_queries), pair.variety,
             variety_file, len(runs), paths["runs_dir"], f", reusing {again} finished (--overwrite "
             "recomputes them)" if again else "", time.time() - start)

evaluation.log_problems(problems, log)

if tables:
    # the table is named by benchmark (or the topics of your own pairs, with a hash of their
    # collections: another collection in a folder of the same name gets its own table), model
    # and pairs
    if BENCHMARK == "flores" or all(t.startswith(("irds:mmarco/", "irds:msmarco-passage/"))
                                    for t in topic_specs):
        benchmark = BENCHMARK
    else:
        benchmark = "+".join(dict.fromkeys(Dataset(t).name for t in topic_specs))
        if not all(str(c).startswith("irds:") for c in collection_ids):
            benchmark += "-" + provenance.digest(collection_ids)
    # each first stage of the pairs once (bm25+bm25-unibi: Chinese pairs analysed apart)
    model = "+".join(dict.fromkeys(experiments.first_stage(experiments.pair_settings(s, pair))
                                   for pair in pairs))
    table = pd.concat(tables)
    table.index.name = f"{benchmark} {model}" + (f" >> {model_label(RERANK)}" if RERANK else "")
    text = evaluation.format_table(table) + "\n" + evaluation.significance_note(
        "the pair's high-resource queries", "the pair's other query sets", CORRECTION)
    print(text)
    name = "all" if PAIRS == ["all"] else "+".join(p.name for p in pairs)
    if TRANSLATE_QUERIES:
        name += f".translated-{TRANSLATE_QUERIES}"
    stage = f"{model}.{experiments.stage(RERANK)}" if RERANK else model
    out = paths["runs_dir"] / f"{benchmark}.{stage}.{name}.gap.md"
    write_text(out, text)
    log.info("wrote %s", out)
