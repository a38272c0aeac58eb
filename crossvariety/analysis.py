"""Language-aware text analysis for BM25, done in Python because PISA's tokenizer is ASCII-only.

One pipeline for every language: Unicode NFKC, one apostrophe, ASCII digits, lowercase; Unicode
word tokens; elision of articles (l', d', qu', dell'...) for French, Catalan, Occitan and
Italian; stopwords (the stop-words package's list where it has one; Lucene's 33 words for
English); Snowball stemming (PyStemmer) where Snowball has the language. A language with neither
a stemmer nor a stop list (Galician, Asturian, Luxembourgish, Occitan, ...) gets the generic
analysis: Unicode words, lowercased, no stopwords, no stemming, and a warning says so.

Chinese and Cantonese become overlapping character bigrams (no segmenter needed; Lucene's CJK
analyzer, the paper's setting) or, with ``cjk="unigrams+bigrams"``, every character and every
bigram. Persian gets the usual character normalisation (Arabic yeh/kaf to Persian, no
diacritics or tatweel, ZWNJ splits), Russian folds ё to е.
"""
import functools
import logging
import re
import unicodedata

import Stemmer
import stop_words

from . import languages
from .errors import UsageError

log = logging.getLogger(__name__)

# Lucene's elision articles (ElisionFilter defaults of the French, Catalan and Italian analyzers);
# Occitan shares the French/Catalan set.
_ELISION = {
    "fr": {"l", "m", "t", "qu", "n", "s", "j", "d", "c", "jusqu", "quoiqu", "lorsqu", "puisqu"},
    "ca": {"d", "l", "m", "n", "s", "t"},
    "oc": {"d", "l", "m", "n", "s", "t", "qu"},
    "it": {"c", "l", "all", "dall", "dell", "nell", "sull", "coll", "pell", "gl", "agl", "dagl",
           "degl", "negl", "sugl", "un", "m", "t", "s", "v", "d"},
}
# Lucene's English stop set: the stop-words package's English list (1,300 words) holds content
# words such as "computer" and "information".
_ENGLISH_STOPWORDS = set(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split())
CJK_MODES = ["bigrams", "unigrams+bigrams"]  # the first is the paper's (Lucene's CJK analyzer)


def spec(lang, cjk="bigrams"):
    """(language, CJK mode) of an analysis: the canonical language code, and the CJK mode for
    Chinese and Cantonese (None for other languages, where it changes nothing)."""
    lang = languages.canonical(lang)
    if cjk not in CJK_MODES:
        raise UsageError(f"unknown CJK analysis {cjk!r}; choose {' or '.join(CJK_MODES)}")
    return lang, (cjk if lang in languages.CJK else None)

_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u00b4`\u2032"})
_DIGITS = str.maketrans({**{chr(0x0660 + i): str(i) for i in range(10)},
                         **{chr(0x06F0 + i): str(i) for i in range(10)}})
_PERSIAN = str.maketrans({"\u064a": "\u06cc", "\u0649": "\u06cc", "\u0643": "\u06a9",
                          "\u0629": "\u0647", "\u06c0": "\u0647", "\u200c": " ", "\u0640": None,
                          **{chr(c): None for c in range(0x064B, 0x0660)}, "\u0670": None})
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_WORD = re.compile(r"\w+(?:'\w+)*")
_WORD_CA = re.compile(r"\w+(?:['\u00b7]\w+)*")  # Catalan l·l (punt volat) stays inside a word
_WORD_ZH = re.compile(rf"([{_CJK}]+)|([^\W{_CJK}]+)")


class Analyzer:
    """text -> list of index terms for one language. Picklable (by language code and CJK mode)."""

    def __init__(self, lang, cjk="bigrams"):
        self.lang, self.cjk = spec(lang, cjk)
        self.elision = _ELISION.get(self.lang, set())
        self.word = _WORD_CA if self.lang == "ca" else _WORD
        algorithm = languages.SNOWBALL.get(self.lang)
        self.stemmer = Stemmer.Stemmer(algorithm, 100_000) if algorithm else None
        if self.lang == "en":
            words = _ENGLISH_STOPWORDS
        elif languages.stopword_language(self.lang):
            words = stop_words.get_stop_words(languages.stopword_language(self.lang))
        else:
            words = ()
        # The lists are run through our own normalisation so that they match our tokens.
        self.stopwords = {w for w in (self.normalize(w) for w in words) if _WORD.fullmatch(w)}
        if self.generic:
            log.warning("no stemmer or stop list for %s (%s): generic analysis (Unicode words, "
                        "lowercase, no stopwords, no stemming)", languages.name(self.lang),
                        self.lang)

    def __reduce__(self):
        return Analyzer, (self.lang, self.cjk or "bigrams")

    @property
    def generic(self):
        """No stemmer, stop list or n-grams: Unicode words, lowercased."""
        return not (self.cjk or self.stemmer or self.stopwords)

    def normalize(self, text):
        text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).translate(_DIGITS)
        if self.lang == "fa":
            text = text.translate(_PERSIAN)
        elif self.lang == "ru":
            text = text.replace("ё", "е").replace("Ё", "Е")
        return text.lower()

    def tokens(self, text):
        """The words of a text, before stopwords and stemming (elision applied)."""
        text = self.normalize(text)
        if self.cjk:
            unigrams = self.cjk == "unigrams+bigrams"
            tokens = []
            for han, word in _WORD_ZH.findall(text):
                if word:
                    tokens.append(word)
                elif len(han) == 1:
                    tokens.append(han)
                else:
                    for i in range(len(han)):
                        if unigrams:
                            tokens.append(han[i])
                        if i + 1 < len(han):
                            tokens.append(han[i:i + 2])
            return tokens
        tokens = self.word.findall(text)
        if self.elision:
            tokens = [self._elide(t) if "'" in t else t for t in tokens]
        return [t.replace("'", "") if "'" in t else t for t in tokens if t]

    def _elide(self, token):
        article, _, rest = token.partition("'")
        return rest if article in self.elision else token

    def __call__(self, text):
        """text -> index terms (stopwords removed, stemmed)."""
        terms = [t for t in self.tokens(text) if t not in self.stopwords]
        if self.stemmer is not None:
            terms = self.stemmer.stemWords(terms)
        return terms

    def counts(self, text):
        """text -> {term: frequency}, the form PISA's toks indexer and query_toks take."""
        counts = {}
        for term in self(text):
            counts[term] = counts.get(term, 0) + 1
        return counts


@functools.lru_cache(maxsize=None)
def get_analyzer(lang, cjk="bigrams"):
    return Analyzer(lang, cjk)
