"""Romanisation with uroman: a text written in Latin letters, its language unchanged.

The pinned uroman 1.3.1.1 (the Uroman object crossvariety.families.analysis loads for BM25)
writes a text in Latin letters without changing its language, as "Lost in Transliteration"
(Chari, MacAvaney, Ounis, SIGIR 2025) did for its Chinese and Russian queries: each query is
romanised whole, ``Uroman().romanize_string(query)``. The authors called it with
``lang=<ISO 639-3>``, a keyword uroman 1.3.1.1 does not read (its keyword is ``lcode``), so
their text had no language-specific rules; that is the default here (``lcode=False``), and
``lcode=True`` passes the language's ISO 639-3 code as ``lcode`` (Russian "ёж" -> "yozh" instead
of "ezh", Ukrainian "Київ" -> "Kyiv" instead of "Kiyiv"). Documents (``words=True``) are
romanised word by word with a word cache (crossvariety.families.analysis.Romanizer): the same
letters as whole texts, whitespace runs aside (checked on 5,060 FLORES sentences in five
scripts), many times faster on a collection. ``segment="anserini"`` first writes Chinese as
the authors' ``_ANSERINI`` variants did (see segment_text). romanize_texts runs in parallel
processes (``workers``); crossvariety.data.translation caches it like its other engines and
puts its output on one line.
"""
import concurrent.futures
import logging
import os

from tqdm.auto import tqdm

from ..errors import UsageError
from .languages import canonical, iso639_3

log = logging.getLogger(__name__)

# Segmentations applied before romanising (segment_text): "" none; "anserini" Chinese as
# pyterrier-anserini's AnseriniTokenizer.zh (Lucene's CJKAnalyzer) cuts it.
SEGMENTS = ["", "anserini"]
# Lucene's CJKAnalyzer stop set (org/apache/lucene/analysis/cjk/stopwords.txt): English words
# removed from Chinese text along with the bigramming.
CJK_STOPWORDS = frozenset(
    "a and are as at be but by for if in into is it no not of on or s such t that the their then "
    "there these they this to was will with www".split())


def segment_text(text, method, lang="zh"):
    """``text`` cut into space-separated tokens as the authors' ``_ANSERINI`` variants were
    before romanising (their transliterate.py, commented out: ``" ".join(
    AnseriniTokenizer.zh.tokenize(query))``, and pyterrier-anserini's ``AnseriniTokenizer.zh``
    is Lucene's CJKAnalyzer). Re-implemented in Python (Lucene needs Java, unavailable here)
    with this project's version of that analyzer (crossvariety.families.analysis, BM25's Chinese
    analysis): NFKC (Lucene: CJK width folding), lowercase, punctuation dropped, every run of Han
    characters as overlapping bigrams (a lone character as itself), other words whole, then
    CJKAnalyzer's English stop words removed. 影音創作者Pewdiepie聲量 -> 影音 音創 創作 作者
    pewdiepie 聲量. Not checked against Lucene itself: words with inner dots or commas (3.5,
    U.S.) are split here, and Hiragana, Katakana and Hangul are not bigrammed."""
    if not method:
        return text
    if method not in SEGMENTS:
        raise UsageError(f"unknown segmentation {method!r}; choose "
                         f"{' or '.join(repr(m) for m in SEGMENTS)}")
    if canonical(lang) not in ("zh", "yue"):
        raise UsageError(f"segmentation {method!r} cuts Chinese text (the authors' _ANSERINI "
                         f"variants are Chinese only), not {lang}")
    from ..families.analysis import get_analyzer
    return " ".join(t for t in get_analyzer("zh").tokens(text) if t not in CJK_STOPWORDS)


class _LcodeWords:
    """analysis.Romanizer's word-by-word cache, with uroman's rules for one language (lcode)."""

    def __init__(self, lcode):
        from ..families.analysis import romanizer
        self.uroman, self.lcode, self.cache = romanizer().uroman, lcode, {}

    def __call__(self, text):
        out = []
        for word in text.split():
            rom = self.cache.get(word)
            if rom is None:
                if len(self.cache) >= 2_000_000:
                    self.cache.clear()
                rom = self.cache[word] = self.uroman.romanize_string(word, lcode=self.lcode)
            out.append(rom)
        return " ".join(out)


_WORD_ROMANIZERS = {}


def romanize(text, lcode=None, words=False):
    """``text`` in Latin letters by uroman: whole (as the authors' queries were) or, with
    ``words``, word by word through a word cache (documents). ``lcode``: uroman's ISO 639-3
    language code, None for no language-specific rules (the authors' runs: see the module doc)."""
    from ..families.analysis import romanizer
    if not words:
        return romanizer().uroman.romanize_string(text, lcode=lcode)
    if lcode is None:
        return romanizer()(text)  # analysis.Romanizer: BM25's word cache, no language rules
    if lcode not in _WORD_ROMANIZERS:
        _WORD_ROMANIZERS[lcode] = _LcodeWords(lcode)
    return _WORD_ROMANIZERS[lcode](text)


def _romanize_chunk(texts, lang, lcode, segment, words):
    return [romanize(segment_text(t, segment, lang), lcode, words) for t in texts]


def uroman_system(lcode=False, segment="", words=False):
    """The uroman engine's name in the translation cache: its version and options (each changes
    the text it writes)."""
    from ..families.analysis import UROMAN_VERSION
    return "uroman-" + UROMAN_VERSION + ("+lcode" if lcode else "") + \
        (f"+{segment}" if segment else "") + ("+words" if words else "")


def romanize_texts(texts, lang, lcode, segment, words, workers, chunk_size,
                           finished=None):
    """Romanise ``texts`` in chunks, in ``workers`` processes (0: one per core) forked after
    uroman's tables are loaded (~4 s, once); each finished chunk goes to ``finished`` (the
    cache) in order."""
    import multiprocessing
    from ..families.analysis import romanizer
    romanizer()  # load the tables before forking: the workers share them
    code = iso639_3(lang) if lcode else None
    chunks = [texts[i:i + chunk_size] for i in range(0, len(texts), chunk_size)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    out = []
    with tqdm(total=len(texts), unit="text", desc=f"uroman {lang}",
              disable=not log.isEnabledFor(logging.INFO)) as progress:
        if workers <= 1:
            results = (_romanize_chunk(c, lang, code, segment, words) for c in chunks)
            pool = None
        else:
            pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("fork"))
            results = pool.map(_romanize_chunk, chunks, *([x] * len(chunks) for x in
                                                            (lang, code, segment, words)))
        try:
            for chunk, romanised in zip(chunks, results):
                out.extend(romanised)
                if finished:
                    finished(chunk, romanised)
                progress.update(len(chunk))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    return out
