"""Build a BM25 index (PISA) of a collection, with language-aware analysis done in Python.

Text is analysed by crossvariety.families.analysis (Unicode tokens, lowercasing, elision, stopwords,
Snowball stemming where Snowball has the language, else a generic analysis with a warning;
Chinese character bigrams; Persian normalisation) on all cores, and PISA indexes the resulting
term counts. The index appears only when complete; a re-run skips a built index unless
--overwrite, or unless its metadata (crossvariety.json) shows it was built from another
collection (other documents in a folder of the same name) or analysis: then it is rebuilt.
One progress bar shows the build (PISA's own console output is kept out).

Examples:
  python index_bm25.py --dataset irds:mmarco/v2/fr --lang fr
  python index_bm25.py --dataset irds:neuclir/1/fa --lang fa --index indexes/bm25/neuclir-fa
  python index_bm25.py --dataset data/flores200-devtest-pt --lang pt
  python index_bm25.py --dataset irds:mmarco/v2/zh --cjk unigrams+bigrams   # indexes/bm25-unibi/
  python index_bm25.py --dataset irds:mmarco/v2/fr --ngram 4          # indexes/bm25-char4/
  python index_bm25.py --dataset data/flores200-devtest-hr --lang hr --romanize --ngram 4
                                                                      # indexes/bm25-uroman-char4/
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
DATASET = "irds:mmarco/v2/fr"  # collection to index: an irds: id (irds:mmarco/v2/fr) or a local
                               # dataset folder (docs.tsv[.gz] or docs.jsonl[.gz])
LANG = ""  # analyzer language: an ISO 639 code (fr, nl or dt, pt, de, zh, fa, gl, ...); empty = the
           # collection's language as ir_datasets records it
CJK = "bigrams"  # terms of Chinese and Cantonese text: bigrams (Lucene's CJK analyzer, the paper's)
                 # or unigrams+bigrams (default index folder {index_dir}/bm25-unibi/)
NGRAM = 0  # BM25 terms: 0 = words (stemmed, stop words removed: the paper's); 3, 4 or 5 = character
           # n-grams of words padded as _word_ (4 recommended; no stemming, no stop words;
           # Chinese/Cantonese keep their bigrams); index folder {index_dir}/bm25-charN/
ROMANIZE = False  # write the text in Latin letters with uroman first (a variety written in another
                  # script; queries must be romanised too: run_mmarco.py --romanize); index folder
                  # {index_dir}/bm25-uroman[-charN]/
SKELETON = False  # romanise, then drop the vowels of every word (consonant skeletons, for a pair
                  # where one side is an abjad: Arabic, Jawi); queries alike: run_mmarco.py
                  # --skeleton; index folder {index_dir}/bm25-uroman-skel[-charN]/
INDEX = ""  # index folder to write; empty = {index_dir}/{model label: bm25, bm25-char4,
            # bm25-uroman, ...}/{dataset name}
WORKERS = 0  # processes that analyse text; 0 = all cores
OVERWRITE = False  # rebuild the index even if it exists
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import logging
import sys
from pathlib import Path

from crossvariety.families import analysis, bm25
from crossvariety.data.datasets import Dataset
from crossvariety.errors import UsageError
from crossvariety.runs import check_writable

log = logging.getLogger("index_bm25")
romanize = analysis.romanization(ROMANIZE, SKELETON)
dataset = Dataset(DATASET)
if not LANG:
    LANG = dataset.docs_lang() if dataset.irds_id else None
    if not LANG:
        raise UsageError(f"the language of {DATASET} is unknown; pass --lang (e.g. --lang pt)")
index = Path(INDEX) if INDEX else bm25.default_index_path(paths["index_dir"], dataset.name,
                                                          bm25.model_label(LANG, CJK, NGRAM,
                                                                           romanize))
if bm25.index_built(index) and not OVERWRITE:
    changed = bm25.stale_index(index, dataset, LANG, CJK, NGRAM, romanize)
    if changed is None:
        log.warning("%s has no record of its collection (built by an older version); nothing "
                    "checked, nothing to do (--overwrite rebuilds it)", index)
        sys.exit(0)
    if not changed:
        log.info("%s is already built; nothing to do (--overwrite rebuilds it)", index)
        sys.exit(0)
    log.info("rebuilding %s: %s", index, "; ".join(changed))
check_writable(index, folder=True, option="--index", replaced=True)
log.info("indexing %s with %s analysis (%s) into %s", DATASET, LANG,
         bm25.model_label(LANG, CJK, NGRAM, romanize), index)
bm25.build_index(dataset.docs_iter(), LANG, index, workers=WORKERS, total=dataset.docs_count(),
                 cjk=CJK, collection=dataset, ngram=NGRAM, romanize=romanize)
