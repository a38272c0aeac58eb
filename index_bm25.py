"""Build a BM25 index (PISA) of a collection, with language-aware analysis done in Python.

Text is analysed by crossvariety.analysis (Unicode tokens, lowercasing, elision, stopwords,
Snowball stemming; Chinese character bigrams; Persian normalisation) on all cores, and PISA
indexes the resulting term counts. The index appears only when complete; a re-run skips a built
index unless --overwrite.

Examples:
  python index_bm25.py --dataset irds:mmarco/v2/fr --lang fr
  python index_bm25.py --dataset irds:neuclir/1/fa --lang fa --index indexes/bm25/neuclir-fa
  python index_bm25.py --dataset data/flores200-devtest-fr --lang fr
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
DATASET = "irds:mmarco/v2/fr"  # collection to index
LANG = ""  # analyzer language; empty = the collection's language from ir_datasets
INDEX = ""  # index folder; empty = {index_dir}/bm25/{dataset name}
WORKERS = 0  # analysis processes; 0 = all cores
OVERWRITE = False  # rebuild an existing index
HELP = {
    "DATASET": "collection: an irds: id (irds:mmarco/v2/fr) or a local dataset folder "
               "(docs.tsv[.gz] or docs.jsonl[.gz])",
    "LANG": "analyzer language (en fr ca oc it nl/dt id ms zh fa ru); empty = the collection's "
            "language as ir_datasets records it",
    "INDEX": "index folder to write; empty = {index_dir}/bm25/{dataset name}",
    "WORKERS": "processes that analyse text; 0 = all cores",
    "OVERWRITE": "rebuild the index even if it exists",
}
paths = settings.configure(globals(), HELP)
# -----------------------------------------------------------------------------
import logging
import sys
from pathlib import Path

from crossvariety.bm25 import build_index, default_index_path, index_built
from crossvariety.datasets import Dataset

log = logging.getLogger("index_bm25")
dataset = Dataset(DATASET)
index = Path(INDEX) if INDEX else default_index_path(paths["index_dir"], dataset.name)
if not LANG:
    LANG = dataset.docs_lang() if dataset.irds_id else None
    if not LANG:
        sys.exit(f"index_bm25.py: the language of {DATASET} is unknown; pass --lang")
if index_built(index) and not OVERWRITE:
    log.info("%s is already built; nothing to do (--overwrite rebuilds it)", index)
    sys.exit(0)
log.info("indexing %s with %s analysis into %s", DATASET, LANG, index)
build_index(dataset.docs_iter(), LANG, index, workers=WORKERS, total=dataset.docs_count())
