"""Build the training JSONL of a variety pair: {"query": str, "pos": [str], "neg": [str]} a line.

Queries are the variety's training queries (a query file, e.g. Catalan translations of the MS
MARCO training queries; read strictly), passages come from the high-resource mMARCO collection
(French for ca-fr). Only training queries with qrels are kept (the judged subset, as in the
paper). Negatives come from one of two sources:
  --source ce   the paper's recipe: the public MS MARCO hard-negative file (BM25 + 12 dense
                systems), filtered with cross-encoder scores (threshold = lowest positive's
                score - 3.0; up to 5 per system). Downloaded on first use if missing, with
                their SHA-256 recorded beside them and checked whenever they are reused.
  --source run  our own first-stage run of the training queries (run_mmarco.py or rerank
                output): ranks --skip-top..--depth, never a judged positive. Offline, any pair.
Then one positive and --num-negatives negatives per query are sampled, --rounds times, seeded:
the same inputs and seed give the same file.

--query-script writes the queries as they are (native), romanised with uroman (translit) or
half and half (mixed: the queries of exactly half the qids romanised, drawn by a hash of
(seed, qid): docs/transliteration.md), the three training files of "Lost in Transliteration"
(SIGIR 2025); --segment anserini cuts Chinese queries first, as its _ANSERINI models did.
Romanisations are cached ({data_dir}/translation-cache.sqlite) and run on every core.

Examples:
  python mine_negatives.py --pair ca-fr --queries data/translations/mmarco-v2-fr-train.ca.tsv
  python mine_negatives.py --pair af-dt --queries data/translations/mmarco-v2-dt-train.af.tsv \\
      --source run --run runs/mmarco-v2-dt-train.bm25.q-af.retrieve.res.gz
  python mine_negatives.py --config configs/train_zh_mixed_bgem3.toml   # Chinese, half romanised
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
PAIR = "ca-fr"  # language pair (variety queries, high-resource passages): ca-fr oc-fr af-dt scn-it
                # yue-zh ms-id gd-en, or a pair of the config's [pairs.NAME] tables (with
                # train_topics and collection)
QUERIES = ""  # variety training queries (qid<TAB>query, MS MARCO training qids; or an irds: id /
              # dataset folder: its queries, e.g. irds:mmarco/v2/zh/train), or paper:PAIR for
              # the paper's released ones (paper:ca-fr, paper:af-dt); empty =
              # {translations_dir}/{training set}.{variety}.tsv, fetched from the paper's released
              # data for ca-fr and af-dt when missing
TRAIN = ""  # dataset whose qrels judge the training queries; empty = the pair's mMARCO train set
            # (irds:mmarco/v2/fr/train for ca-fr)
COLLECTION = ""  # collection of the passages; empty = the pair's mMARCO collection
SOURCE = "ce"  # ce: the paper's recipe (MS MARCO hard negatives filtered by cross-encoder scores);
               # run: negatives from --run
HARD_NEGATIVES = ""  # sentence-transformers' msmarco-hard-negatives.jsonl.gz; empty =
                     # {data_dir}/msmarco-hard-negatives.jsonl.gz, downloaded if missing
CE_SCORES = ""  # cross-encoder scores (pickle); empty =
                # {data_dir}/cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz, downloaded if
                # missing
CE_MARGIN = 3.0  # a negative's cross-encoder score must be <= the lowest positive's minus this
PER_SYSTEM = 5  # negatives kept per retrieval system of the hard-negative file
RUN = ""  # --source run: a TREC run of the training queries over the collection
DEPTH = 200  # --source run: negatives come from the ranks above this (the top DEPTH of each query's
             # ranking, after --skip-top)
SKIP_TOP = 3  # --source run: the first ranks skipped (likely unjudged positives hide there)
NUM_NEGATIVES = 1  # negatives per example (the BGE-M3 recipe's group size 2 = 1 positive + 1
                   # negative)
ROUNDS = 1  # sampling rounds; each gives every query another example (new positive/negatives)
SEED = 42  # random seed of the sampling
OUT = ""  # JSONL to write; empty = {data_dir}/training/{pair}.{source}.jsonl (with another query
          # script or a segmentation: {pair}.{source}.{script}[.{segment}].jsonl)
OVERWRITE = False  # rebuild the file even if it exists
QUERY_SCRIPT = "native"  # script of the training queries: native (as read), translit (all
                         # romanised with uroman) or mixed (exactly half of the qids romanised,
                         # drawn by a hash of --seed and the qid, whatever the file's order;
                         # docs/transliteration.md)
UROMAN_LCODE = False  # romanise with uroman's rules of the queries' language (lcode); off = the
                      # SIGIR 2025 paper's files (their lang= is ignored by uroman 1.3.1.1)
SEGMENT = ""  # cut the queries first, native ones too: empty (none) or anserini (Chinese as the
              # paper's _ANSERINI models: Lucene CJKAnalyzer's Han bigrams, re-implemented)
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import json
import logging
import sys
import time
from pathlib import Path

from crossvariety.data import negatives, released, romanization, translation
from crossvariety.data.datasets import Dataset, load_queries, read_queries, variety_queries_path
from crossvariety.data.downloads import local_copy
from crossvariety.errors import UsageError, UserError
from crossvariety.data.pairs import PAIRS as BUILT_IN, get_pairs
from crossvariety.runs import atomic_path, check_writable, read_run

log = logging.getLogger("mine_negatives")
pair = get_pairs([PAIR])[0]
if SOURCE not in ("ce", "run"):
    raise UsageError(f"--source {SOURCE!r}: choose ce or run")
if SOURCE == "run" and not RUN:
    raise UsageError("--source run needs --run FILE")
if QUERY_SCRIPT not in negatives.QUERY_SCRIPTS:
    raise UsageError(f"--query-script {QUERY_SCRIPT!r}: choose "
                     f"{', '.join(negatives.QUERY_SCRIPTS)}")
if SEGMENT not in romanization.SEGMENTS:
    raise UsageError(f"--segment {SEGMENT!r}: choose anserini, or leave it empty")
if UROMAN_LCODE and QUERY_SCRIPT == "native":
    raise UsageError("--uroman-lcode goes with --query-script translit or mixed (native queries "
                     "are not romanised)")
if SEGMENT:
    romanization.segment_text("", SEGMENT, pair.variety)  # Chinese only: fails before the work
if not (TRAIN or pair.train_topics) or not (COLLECTION or pair.collection):
    raise UsageError(f"pair {pair.name} has no training topics or collection: pass --train and "
                     f"--collection, or set train_topics and collection in its [pairs.{pair.name}] "
                     "table")
script_suffix = (f".{QUERY_SCRIPT}" if QUERY_SCRIPT != "native" or SEGMENT else "") + \
    (f".{SEGMENT}" if SEGMENT else "")
out = Path(OUT) if OUT else \
    paths["data_dir"] / "training" / f"{pair.name}.{SOURCE}{script_suffix}.jsonl"
if out.is_file() and not OVERWRITE:
    log.info("%s exists; nothing to do (--overwrite rebuilds it)", out)
    sys.exit(0)
check_writable(out, option="--out")


start = time.time()
train = Dataset(TRAIN or pair.train_topics)
collection = Dataset(COLLECTION or pair.collection)
queries_file = Path(released.resolve(QUERIES, "train-queries")) if QUERIES else \
    variety_queries_path(paths["translations_dir"], train.name, pair.variety)
if not queries_file.is_file() and not QUERIES and pair.name in released.TRAIN_QUERIES \
        and train.spec == BUILT_IN[pair.name].train_topics:
    released.install_queries(pair.name, queries_file, "train")  # the paper's, from its released data
if QUERIES and (QUERIES.startswith("irds:") or Path(QUERIES).is_dir()):  # a dataset's queries
    queries_file = QUERIES
    lowres_queries = load_queries(QUERIES)
else:
    lowres_queries = read_queries(queries_file)
qrels = train.qrels()
judged = set(qrels[qrels.label > 0].qid)
kept = lowres_queries[lowres_queries.qid.isin(judged)]
log.info("%s: %d training queries, %d of them judged (the subset kept)", queries_file,
         len(lowres_queries), len(kept))

if SOURCE == "ce":
    data = paths["data_dir"]
    ce_scores = negatives.read_ce_scores(local_copy(
        Path(CE_SCORES) if CE_SCORES else data / Path(negatives.CE_SCORES_URL).name,
        negatives.CE_SCORES_URL))
    candidates = negatives.ce_filtered(
        local_copy(Path(HARD_NEGATIVES) if HARD_NEGATIVES else
                   data / Path(negatives.HARD_NEGATIVES_URL).name, negatives.HARD_NEGATIVES_URL),
        ce_scores, kept.qid, margin=CE_MARGIN, per_system=PER_SYSTEM)
else:
    candidates = negatives.from_run(read_run(RUN), qrels[qrels.qid.isin(kept.qid)],
                                    depth=DEPTH, skip_top=SKIP_TOP)
log.info("%d queries have negatives (%s)", len(candidates), SOURCE)

docnos = sorted({d for pos, neg in candidates.values() for d in pos + neg})
doc_text = collection.doc_texts(docnos)
absent = [d for d in docnos if d not in doc_text]
if absent:
    raise UserError(f"{len(absent)} passages are not in {collection.spec} "
                    f"(e.g. {', '.join(absent[:5])}): wrong --collection?")
query_text = dict(zip(kept.qid, kept["query"]))
if QUERY_SCRIPT != "native" or SEGMENT:
    # the training file's query script: a qid's query is romanised in every round alike
    qids = sorted(candidates)
    chosen = set(qids) if QUERY_SCRIPT == "translit" else \
        negatives.mixed_half(qids, SEED) if QUERY_SCRIPT == "mixed" else set()
    lang = pair.variety
    for qid in qids:
        if qid not in chosen and SEGMENT:
            query_text[qid] = romanization.segment_text(query_text[qid], SEGMENT, lang)
    if chosen:
        romanised = translation.translate_queries(
            kept[kept.qid.isin(chosen)], lang, lang, "uroman",
            cache_path=paths["data_dir"] / "translation-cache.sqlite", lcode=UROMAN_LCODE,
            segment=SEGMENT)
        query_text.update(zip(romanised.qid, romanised["query"]))
    empty = [qid for qid in qids if not query_text[qid].strip()]
    if empty:
        raise UserError(f"{len(empty)} queries are empty after --segment {SEGMENT} (qids "
                        f"{', '.join(empty[:10])}); leave --segment out or drop them")
    log.info("query script %s%s: %d of the %d queries romanised (uroman%s)", QUERY_SCRIPT,
             f", segmented ({SEGMENT})" if SEGMENT else "", len(chosen), len(qids),
             ", lcode" if UROMAN_LCODE else ", no language rules")
examples = negatives.sample_examples(candidates, query_text, doc_text,
                                     num_negatives=NUM_NEGATIVES, rounds=ROUNDS, seed=SEED)
with atomic_path(out) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
        for example in examples:
            f.write(json.dumps(example, ensure_ascii=False) + "\n")
log.info("wrote %d examples (%d queries x %d rounds, %d negatives each) to %s in %.1fs",
         len(examples), len(candidates), ROUNDS, NUM_NEGATIVES, out, time.time() - start)
