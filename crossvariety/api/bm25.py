"""BM25 as pyterrier_pisa's ``PisaIndex`` offers it, with the repository's language-aware analysis.

``PisaIndex(path).indexer()`` / ``.bm25()`` tokenise with PISA's ASCII-only tokenizer ("café" ->
"caf"; Cyrillic or Chinese text gives no terms). ``Bm25Index`` has the same shape, and analyses
text in Python the way the stage scripts do (crossvariety.families.analysis: Snowball stemmers
and stop lists, CJK bigrams, character n-grams, uroman), so an index built here is the index
``run_mmarco.py`` builds and ``bm25()`` gives the same run.
"""
import json
from pathlib import Path

import pyterrier as pt

from ..errors import UserError
from ..families import analysis, bm25

MODES = ("create", "overwrite")


class Bm25Index:
    """A BM25 index at ``path`` (a folder): built with ``index()`` / ``indexer()``, searched with
    ``bm25()``.

    ``language``: the documents' language (fr, nl, zh, ...; any ISO code or FLORES code): its
    analysis is used for documents and queries alike, as in the paper (variety queries are
    analysed as the high-resource language). An index already built records its analysis:
    ``language`` may then be left out. ``cjk`` (Chinese, Cantonese: "bigrams", the paper's, or
    "unigrams+bigrams"), ``ngram`` (0 = words; 3-5 = character n-grams) and ``romanize`` (True:
    uroman first; "skeleton": uroman, then no vowels) choose the analysis as run_mmarco.py's
    --cjk, --ngram, --romanize, --skeleton do. ``threads``:
    analysis processes while indexing (default all cores) and PISA threads while searching.
    ``overwrite``: ``index()`` replaces a built index (as pyterrier_pisa's ``overwrite=True``).
    ``text_field``: the documents' field that is indexed.
    """

    def __init__(self, path, language=None, cjk="bigrams", ngram=0, romanize=False,
                 threads=None, overwrite=False, text_field="text"):
        self.path = Path(path)
        self.text_field = text_field
        self.threads = threads
        self.overwrite = overwrite
        recorded = self.recorded_analysis()
        if language is None:
            if recorded is None:
                raise UserError(f"{self.path} is not a built BM25 index: pass language= (the "
                                "documents' language, e.g. 'fr') to build it")
            self.spec = _spec(*recorded)
            return
        self.spec = analysis.spec(language, cjk, ngram, romanize)
        if recorded is not None and _spec(*recorded) != self.spec and not overwrite:
            raise UserError(f"{self.path} was built with another analysis "
                            f"({_describe(_spec(*recorded))}, not "
                            f"{_describe(self.spec)}); pass overwrite=True to rebuild it, or "
                            "another path")

    def recorded_analysis(self):
        """(lang, cjk, ngram, romanize) of the built index, or None when it is not built."""
        meta = self.path / bm25.META
        return bm25.recorded_analysis(json.loads(meta.read_text())) if meta.is_file() else None

    @property
    def language(self):
        return self.spec.lang

    @property
    def label(self):
        """The run scripts' name of this analysis: bm25, bm25-unibi, bm25-char4, bm25-uroman..."""
        return self.spec.label

    def built(self):
        return bm25.index_built(self.path)

    def __repr__(self):
        return f"Bm25Index({str(self.path)!r}, language={self.spec.lang!r})"

    def indexer(self, text_field=None, mode=None, threads=None, batch_size=2000):
        """A pt.Indexer of {"docno", text_field} records (pyterrier_pisa's ``indexer()``);
        ``mode``: "create" (a built index is an error) or "overwrite" (default: as the index's
        ``overwrite``)."""
        mode = mode or ("overwrite" if self.overwrite else "create")
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: choose {' or '.join(MODES)}")
        return Bm25Indexer(self, text_field or self.text_field, mode, threads or self.threads,
                           batch_size)

    def index(self, it):
        """Index an iterable of {"docno", "text"} dicts (``dataset.get_corpus_iter()``)."""
        return self.indexer().index(it)

    def bm25(self, k1=bm25.K1, b=bm25.B, num_results=1000, threads=None, verbose=False):
        """The BM25 retriever (topics qid, query -> qid, query, docno, score, rank): the query
        analysed as the documents were, then PISA (k1 0.9, b 0.4, as pyterrier_pisa's)."""
        if not self.built():
            raise UserError(f"{self.path} is not built yet: index() it first")
        return bm25.bm25_retriever(self.path, num_results=num_results, k1=k1, b=b,
                                   threads=threads or self.threads)

    def retriever(self, num_results=1000, **options):
        """``bm25()``, under the name the other index classes use."""
        return self.bm25(num_results=num_results, **options)


class Bm25Indexer(pt.Indexer):
    def __init__(self, index, text_field, mode, threads, batch_size):
        self.bm25_index, self.text_field, self.mode = index, text_field, mode
        self.threads, self.batch_size = threads, batch_size

    def __repr__(self):
        return f"{self.bm25_index!r}.indexer(mode={self.mode!r})"

    def index_inputs(self):
        return [["docno", self.text_field]]

    def index(self, it):
        target = self.bm25_index
        if self.mode == "create" and target.built():
            raise UserError(f"{target.path} is already built; use it as it is, or pass "
                            "overwrite=True (mode='overwrite') to rebuild it")
        field = self.text_field
        docs = ({"docno": str(d["docno"]), "text": d[field]} for d in it)
        spec = target.spec
        bm25.build_index(docs, spec.lang, target.path, workers=self.threads or 0,
                         batch_size=self.batch_size, cjk=spec.cjk or "bigrams",
                         ngram=spec.ngram, romanize=spec.romanize)
        return target


def _spec(lang, cjk, ngram, romanize):
    """The analysis an index records (its cjk is None outside Chinese and Cantonese)."""
    return analysis.spec(lang, cjk or "bigrams", ngram, romanize)


def _describe(spec):
    return f"{spec.lang}, {spec.label}"
