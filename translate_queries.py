"""Translate queries between language varieties, offline: Apertium, OpenCC, or a Hugging Face model;
or write them in Latin letters with uroman (romanised queries, "Lost in Transliteration").

Keeps qids and order and writes exactly one translation per query (checked line for line, never
shifted by a line break or markup inside a query). Translations are cached by content hash in
an SQLite file, so a re-run translates only the queries that changed; --overwrite translates
everything again. Output: a query file (qid<TAB>query) that run_mmarco.py reads.

With --pair NAME (a built-in pair or one of the config's [pairs.NAME] tables) the defaults come
from the pair: its high-resource topics are translated into the variety and written where
run_mmarco.py looks for the variety queries ({translations_dir}/{topics}.{variety}.tsv, or the
pair's variety_queries).

Engines and the directions they cover:
  apertium  fr<->ca, nl<->af, fr<->oc, id<->ms (Debian: apt-get install apertium
            apertium-fra-cat apertium-afr-nld apertium-oci-fra apertium-ind-zlm), pt<->gl,
            es<->gl, es->ast, and any other installed mode named by the ISO codes
  opencc    yue<->zh: Hong Kong Traditional <-> Simplified script only, not wording
            (apt-get install opencc)
  hf        any direction of NLLB-200 (default nllb-200-600m), or a one-direction OPUS-MT
            model by --model; batched, longest first, bf16 on a GPU
  uroman    a language into Latin letters (--tgt: the same language, or leave it out): each
            query romanised whole as the SIGIR 2025 paper did, without language-specific
            rules by default (the authors' lang= keyword is ignored by uroman 1.3.1.1;
            --uroman-lcode applies uroman's rules of the language); --segment anserini cuts
            Chinese first as the paper's _ANSERINI models; --docs romanises a collection's
            documents instead (a dataset folder for run_mmarco.py --collection); --released
            takes the authors' released romanised queries instead of running uroman.
            Parallel processes (--workers), cached (docs/transliteration.md)

Examples:
  python translate_queries.py --queries irds:mmarco/v2/fr/dev/small --src fr --tgt ca \\
      --out data/translations/mmarco-v2-fr-dev-small.ca.tsv
  python translate_queries.py --queries data/translations/flores200-devtest-fr.ca.tsv.gz \\
      --src ca --tgt fr --out ca2fr.tsv
  python translate_queries.py --queries q.fr.tsv --src fr --tgt scn --engine hf --out q.scn.tsv
  python translate_queries.py --config configs/my_pair.toml --pair gl-pt   # the pair's queries
  python translate_queries.py --queries irds:mmarco/v2/ru/dev/small --src ru --engine uroman \\
      --out data/translations/mmarco-v2-ru-dev-small.rus_Latn.tsv
  python translate_queries.py --config configs/train_zh_translit_bgem3.toml   # its translit pair
  python translate_queries.py --queries irds:mmarco/v2/zh --src zh --engine uroman --docs \\
      --out data/mmarco-v2-zh.uroman   # a romanised collection (dataset folder)
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
PAIR = ""  # a language pair (ca-fr, a [pairs.NAME] table of the config, ...): translate its
           # high-resource topics into its variety, into the file run_mmarco.py reads; --queries,
           # --src, --tgt and --out override those defaults
QUERIES = ""  # queries to translate: a query file (qid<TAB>query, .tsv or .tsv.gz), an irds: id
              # (irds:mmarco/v2/fr/dev/small) or a dataset folder
QUERY_FIELD = ""  # for irds: queries with several fields, the one to translate (neuCLIR: title or
                  # ht_title)
SRC = ""  # language of the queries: an ISO 639 code (fr ca oc nl/dt af it scn zh yue id ms en gd fa
          # ru pt gl ...)
TGT = ""  # language to translate into (same codes)
ENGINE = "apertium"  # apertium (fr<->ca, nl<->af, fr<->oc, id<->ms, pt<->gl, ... any installed
                     # mode), opencc (yue<->zh script), hf, or uroman (a language in Latin
                     # letters: --tgt the same language or empty)
MODEL = ""  # hf engine: a model short name (nllb-200-600m, nllb-200-1.3b), HF id or local path;
            # empty = nllb-200-600m
OUT = ""  # query file to write (.tsv, or .tsv.gz to compress it)
CACHE = ""  # SQLite cache of translations; empty = {data_dir}/translation-cache.sqlite
WORKERS = 0  # Apertium pipelines run in parallel (0 = one per 4 cores); uroman processes (0 = one
             # per core)
BATCH_TOKENS = 16384  # hf engine: padded tokens (times beams) per generation batch
NUM_BEAMS = 4  # hf engine: beam search width (1 = greedy)
OVERWRITE = False  # translate every query again, ignoring and refreshing the cache
UROMAN_LCODE = False  # uroman: apply uroman's rules of the language (its ISO 639-3 code as lcode:
                      # Russian ё -> yo); off = the SIGIR 2025 paper's runs (their lang= is
                      # ignored by uroman 1.3.1.1: no language rules)
SEGMENT = ""  # uroman: cut the text first: empty (none) or anserini (Chinese as the paper's
              # _ANSERINI models: Lucene CJKAnalyzer's overlapping Han bigrams, lowercase, no
              # punctuation; re-implemented in Python)
DOCS = False  # uroman: romanise the documents of --queries' collection (irds: id or dataset
              # folder) instead of its queries, into the dataset folder --out (docs.tsv.gz) for
              # run_mmarco.py --collection ("romanised collection" runs; word by word, cached)
RELEASED = False  # uroman: take the authors' released romanised queries of --queries (mMARCO
                  # zh/ru dev/small, neuCLIR zh/ru trec-2022/2023; Hugging Face, fetched on first
                  # use, checked) instead of running uroman
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import gzip
import logging
import time
from pathlib import Path

from crossvariety.data import released, romanization, translation
from crossvariety.data.datasets import Dataset, load_queries, variety_queries_path, write_queries
from crossvariety.errors import UsageError
from crossvariety.data.languages import canonical
from crossvariety.data.pairs import get_pairs
from crossvariety.runs import atomic_path, check_writable

log = logging.getLogger("translate_queries")
if ENGINE not in translation.ENGINES:
    raise UsageError(f"unknown engine {ENGINE!r}; choose from {', '.join(translation.ENGINES)}")
uroman_only = [f"--{name.lower().replace('_', '-')}" for name in
               ("UROMAN_LCODE", "SEGMENT", "DOCS", "RELEASED") if globals()[name]]
if uroman_only and ENGINE != "uroman":
    raise UsageError(f"{', '.join(uroman_only)} go(es) with --engine uroman, not {ENGINE}")
if SEGMENT not in romanization.SEGMENTS:
    raise UsageError(f"--segment {SEGMENT!r}: choose anserini, or leave it empty")
if RELEASED and (UROMAN_LCODE or SEGMENT or DOCS):
    raise UsageError("--released takes the authors' romanised queries as they are: without "
                     "--uroman-lcode, --segment or --docs")
if DOCS and PAIR:
    raise UsageError("--docs romanises a collection: give it as --queries (and --src), not --pair")
if PAIR:
    pair = get_pairs([PAIR])[0]
    if not (QUERIES or pair.dev_topics):
        raise UsageError(f"pair {pair.name} has no topics to translate; pass --queries or set "
                         f"topics in its [pairs.{pair.name}] table")
    QUERIES = QUERIES or pair.dev_topics
    SRC, TGT = SRC or pair.highres, TGT or pair.variety
    OUT = OUT or pair.variety_queries or str(
        paths["translations_dir"] / f"{Dataset(QUERIES).name}.{pair.variety}.{SEGMENT}.tsv"
        if SEGMENT else variety_queries_path(paths["translations_dir"], Dataset(QUERIES).name,
                                             pair.variety))
if ENGINE == "uroman":
    TGT = TGT or SRC  # the language itself, in Latin letters
for name in ("QUERIES", "SRC", "TGT", "OUT"):
    if not globals()[name]:
        raise UsageError(f"--{name.lower()} is required, or --pair (see --help)")
canonical(SRC), canonical(TGT)  # an unknown language fails before the queries are read
if not translation.covers(ENGINE, SRC, TGT) and ENGINE == "uroman":
    raise UsageError(f"uroman writes a language in Latin letters: --tgt must be --src's language "
                     f"({canonical(SRC)}, e.g. {translation.iso639_3(SRC)}_Latn) or empty, "
                     f"not {TGT}")
if SEGMENT:
    romanization.segment_text("", SEGMENT, SRC)  # Chinese only: fails before the work
options = dict(lcode=UROMAN_LCODE, segment=SEGMENT) if ENGINE == "uroman" else {}
cache = CACHE or paths["data_dir"] / "translation-cache.sqlite"
if DOCS:  # a romanised collection: {OUT}/docs.tsv.gz, streamed in chunks, each cached
    out = Path(OUT) / "docs.tsv.gz"
    check_writable(out, option="--out")
    check_writable(cache, option="--cache")
    collection = Dataset(QUERIES).collection()
    doc_cache = translation.TranslationCache(cache)
    chunk, count, start = [], 0, time.time()
    with atomic_path(out) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as f:
        def flush():
            texts = translation.translate([d["text"] for d in chunk], SRC, TGT, ENGINE,
                                          cache=doc_cache,
                                          refresh=OVERWRITE, workers=WORKERS, words=True,
                                          **options)
            f.writelines(f"{d['docno']}\t{t}\n" for d, t in zip(chunk, texts))
        for doc in collection.docs_iter():
            chunk.append(doc)
            if len(chunk) == 20_000:
                flush()
                count += len(chunk)
                chunk = []
        if chunk:
            flush()
            count += len(chunk)
    log.info("wrote %d romanised documents of %s to %s in %.1fs (run_mmarco.py --collection %s)",
             count, collection.spec, out, time.time() - start, OUT)
    raise SystemExit(0)
check_writable(OUT, option="--out")  # before, not after, the translating
check_writable(cache, option="--cache")
queries = load_queries(QUERIES, QUERY_FIELD or None)
if RELEASED:
    start = time.time()
    released.install_translit_queries(QUERIES, OUT, QUERY_FIELD or None, queries.qid)
    log.info("wrote the released romanised queries of %s to %s in %.1fs", QUERIES, OUT,
             time.time() - start)
    raise SystemExit(0)
log.info("read %d queries from %s", len(queries), QUERIES)
start = time.time()
translated = translation.translate_queries(
    queries, SRC, TGT, ENGINE, MODEL or None,
    cache_path=cache, refresh=OVERWRITE,
    workers=WORKERS, batch_tokens=BATCH_TOKENS, num_beams=NUM_BEAMS, **options)
write_queries(translated, OUT)
log.info("wrote %d %s queries (%s from %s) to %s in %.1fs", len(translated), TGT, ENGINE, SRC,
         OUT, time.time() - start)
