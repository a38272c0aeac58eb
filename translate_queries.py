"""Translate queries between language varieties, offline: Apertium, OpenCC, or a Hugging Face model.

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

Examples:
  python translate_queries.py --queries irds:mmarco/v2/fr/dev/small --src fr --tgt ca \\
      --out data/translations/mmarco-v2-fr-dev-small.ca.tsv
  python translate_queries.py --queries data/translations/flores200-devtest-fr.ca.tsv.gz \\
      --src ca --tgt fr --out ca2fr.tsv
  python translate_queries.py --queries q.fr.tsv --src fr --tgt scn --engine hf --out q.scn.tsv
  python translate_queries.py --config configs/my_pair.toml --pair gl-pt   # the pair's queries
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
                     # mode), opencc (yue<->zh script) or hf
MODEL = ""  # hf engine: a model short name (nllb-200-600m, nllb-200-1.3b), HF id or local path;
            # empty = nllb-200-600m
OUT = ""  # query file to write (.tsv, or .tsv.gz to compress it)
CACHE = ""  # SQLite cache of translations; empty = {data_dir}/translation-cache.sqlite
WORKERS = 0  # Apertium pipelines run in parallel; 0 = one per 4 cores
BATCH_TOKENS = 16384  # hf engine: padded tokens (times beams) per generation batch
NUM_BEAMS = 4  # hf engine: beam search width (1 = greedy)
OVERWRITE = False  # translate every query again, ignoring and refreshing the cache
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import logging
import time

from crossvariety.data import translation
from crossvariety.data.datasets import Dataset, load_queries, variety_queries_path, write_queries
from crossvariety.errors import UsageError
from crossvariety.data.languages import canonical
from crossvariety.data.pairs import get_pairs
from crossvariety.runs import check_writable

log = logging.getLogger("translate_queries")
if ENGINE not in translation.ENGINES:
    raise UsageError(f"unknown engine {ENGINE!r}; choose from {', '.join(translation.ENGINES)}")
if PAIR:
    pair = get_pairs([PAIR])[0]
    if not (QUERIES or pair.dev_topics):
        raise UsageError(f"pair {pair.name} has no topics to translate; pass --queries or set "
                         f"topics in its [pairs.{pair.name}] table")
    QUERIES = QUERIES or pair.dev_topics
    SRC, TGT = SRC or pair.highres, TGT or pair.variety
    OUT = OUT or pair.variety_queries or str(variety_queries_path(
        paths["translations_dir"], Dataset(QUERIES).name, pair.variety))
for name in ("QUERIES", "SRC", "TGT", "OUT"):
    if not globals()[name]:
        raise UsageError(f"--{name.lower()} is required, or --pair (see --help)")
canonical(SRC), canonical(TGT)  # an unknown language fails before the queries are read
check_writable(OUT, option="--out")  # before, not after, the translating
cache = CACHE or paths["data_dir"] / "translation-cache.sqlite"
check_writable(cache, option="--cache")
queries = load_queries(QUERIES, QUERY_FIELD or None)
log.info("read %d queries from %s", len(queries), QUERIES)
start = time.time()
translated = translation.translate_queries(
    queries, SRC, TGT, ENGINE, MODEL or None,
    cache_path=cache, refresh=OVERWRITE,
    workers=WORKERS, batch_tokens=BATCH_TOKENS, num_beams=NUM_BEAMS)
write_queries(translated, OUT)
log.info("wrote %d %s queries (%s from %s) to %s in %.1fs", len(translated), TGT, ENGINE, SRC,
         OUT, time.time() - start)
