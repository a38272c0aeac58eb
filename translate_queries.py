"""Translate queries between language varieties, offline: Apertium, OpenCC, or a Hugging Face model.

Keeps qids and order and writes exactly one translation per query (checked line for line, never
shifted by a line break or markup inside a query). Translations are cached by content hash in
an SQLite file, so a re-run translates only the queries that changed; --overwrite translates
everything again. Output: a query file (qid<TAB>query) that run_mmarco.py reads.

Engines and the directions they cover:
  apertium  fr<->ca, nl<->af, fr<->oc, id<->ms (Debian: apt-get install apertium
            apertium-fra-cat apertium-afr-nld apertium-oci-fra apertium-ind-zlm)
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
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
QUERIES = ""  # query file (qid<TAB>query), irds: id or dataset folder
QUERY_FIELD = ""  # field of irds: queries with several (neuCLIR: title, ht_title)
SRC = ""  # language of the queries
TGT = ""  # language to translate into
ENGINE = "apertium"  # apertium, opencc or hf
MODEL = ""  # hf engine: model name or path; empty = nllb-200-600m
OUT = ""  # query file to write (.tsv or .tsv.gz)
CACHE = ""  # SQLite translation cache; empty = {data_dir}/translation-cache.sqlite
WORKERS = 0  # parallel Apertium pipelines; 0 = one per 4 cores
BATCH_TOKENS = 16384  # hf engine: tokens (x beams) per batch
NUM_BEAMS = 4  # hf engine: beam size
OVERWRITE = False  # translate again, ignoring (and refreshing) the cache
HELP = {
    "QUERIES": "queries to translate: a query file (qid<TAB>query, .tsv or .tsv.gz), an irds: "
               "id (irds:mmarco/v2/fr/dev/small) or a dataset folder",
    "QUERY_FIELD": "for irds: queries with several fields, the one to translate (neuCLIR: title)",
    "SRC": "language of the queries: fr ca oc nl/dt af it scn zh yue id ms en gd fa ru",
    "TGT": "language to translate into (same codes)",
    "ENGINE": "apertium (fr<->ca, nl<->af, fr<->oc, id<->ms), opencc (yue<->zh script) or hf",
    "MODEL": "hf engine: a model short name (nllb-200-600m, nllb-200-1.3b), HF id or local path",
    "OUT": "query file to write; .gz compresses it",
    "CACHE": "SQLite cache of translations; empty = {data_dir}/translation-cache.sqlite",
    "WORKERS": "Apertium pipelines run in parallel; 0 = one per 4 cores",
    "BATCH_TOKENS": "hf engine: padded tokens (times beams) per generation batch",
    "NUM_BEAMS": "hf engine: beam search width (1 = greedy)",
    "OVERWRITE": "translate every query again, ignoring and refreshing the cache",
}
paths = settings.configure(globals(), HELP)
# -----------------------------------------------------------------------------
import logging
import sys
import time

from crossvariety.datasets import QueryFileError, load_queries, write_queries
from crossvariety.translation import TranslationError, translate_queries

log = logging.getLogger("translate_queries")
for name in ("QUERIES", "SRC", "TGT", "OUT"):
    if not globals()[name]:
        sys.exit(f"translate_queries.py: --{name.lower()} is required (see --help)")
try:
    queries = load_queries(QUERIES, QUERY_FIELD or None)
    log.info("read %d queries from %s", len(queries), QUERIES)
    start = time.time()
    translated = translate_queries(
        queries, SRC, TGT, ENGINE, MODEL or None,
        cache_path=CACHE or paths["data_dir"] / "translation-cache.sqlite", refresh=OVERWRITE,
        workers=WORKERS, batch_tokens=BATCH_TOKENS, num_beams=NUM_BEAMS)
except (QueryFileError, TranslationError, ValueError) as e:
    sys.exit(f"translate_queries.py: {e}")
write_queries(translated, OUT)
log.info("wrote %d %s queries (%s from %s) to %s in %.1fs", len(translated), TGT, ENGINE, SRC,
         OUT, time.time() - start)
