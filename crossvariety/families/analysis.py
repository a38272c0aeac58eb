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

Beyond the paper (docs/bm25_analysis.md): ``ngram=N`` (3-5) indexes the character N-grams of
each word padded with a boundary mark (``_word_``: "casa" -> _cas casa asa_) instead of its
stem, for any language and script (Chinese and Cantonese keep their bigram modes); related
varieties share sub-word material that whole words miss. ``romanize=True`` first writes text in
Latin letters with uroman (one script for a variety written in another: Serbian Cyrillic vs
Croatian); ``romanize="skeleton"`` then also drops the vowels of each word (its consonant
skeleton): where one side is written in an abjad (Arabic, Jawi, Perso-Arabic), which spells few
vowels, its romanisation has few vowels too, and the other side's must lose them to match.
Both analyse plainly: no stop words, no stemming (a stemmer and a stop list are for whole words
of the original spelling); elision still applies.
"""
import collections
import functools
import logging
import unicodedata
from pathlib import Path

import regex
import Stemmer
import stop_words

from ..data import languages
from ..errors import UsageError, UserError

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
# Lucene's Snowball stop lists (org/apache/lucene/analysis/snowball/*_stop.txt, from
# snowballstem.org, BSD), copied into crossvariety/families/stopwords/: the sets Lucene's analyzers use,
# which the paper used through Anserini. Short lists of function words; the stop-words package's
# lists (kept for the other languages) hold content words (Italian persone, lavoro, nuovo).
SNOWBALL_STOPS = {"fr": "french", "nl": "dutch", "it": "italian", "id": "indonesian",
                  "ms": "indonesian"}
STOPWORDS_DIR = Path(__file__).parent / "stopwords"
CJK_MODES = ["bigrams", "unigrams+bigrams"]  # the first is the paper's (Lucene's CJK analyzer)
NGRAMS = (3, 4, 5)  # character n-gram lengths offered; 4 is the usual best (McNamee & Mayfield)
BOUNDARY = "_"  # pads each word before n-grams: "_casa_" (a word's start and end are features)
UROMAN_VERSION = "1.3.1.1"  # the pinned uroman (requirements.txt): romanised terms depend on it
# What romanize= can ask: uroman's Latin letters, or those without vowels (consonant skeletons)
ROMANIZATIONS = {"uroman": "-uroman", "skeleton": "-uroman-skel"}  # -> label part
_VOWELS = regex.compile(r"[aeiouy]")


class Spec(collections.namedtuple("Spec", "lang cjk ngram romanize")):
    """What an analysis is: the canonical language; the CJK mode (Chinese and Cantonese only,
    else None); the character n-gram length (0 = words); how text is romanised first (False,
    or a key of ROMANIZATIONS)."""

    @property
    def label(self):
        """The BM25 model's name in index folders and run files: bm25, bm25-unibi, bm25-char4,
        bm25-uroman, bm25-uroman-char4, bm25-uroman-skel-char4, ..."""
        return "bm25" + ("-unibi" if self.cjk == "unigrams+bigrams" else "") + \
            ROMANIZATIONS.get(self.romanize, "") + (f"-char{self.ngram}" if self.ngram else "")


def romanization(romanize=False, skeleton=False):
    """The romanize= of the settings ``romanize`` (uroman) and ``skeleton`` (uroman, then no
    vowels; implies romanize)."""
    return "skeleton" if skeleton else "uroman" if romanize else False


def spec(lang, cjk="bigrams", ngram=0, romanize=False):
    """The Spec of an analysis, checked and canonical: the CJK mode only for Chinese and
    Cantonese written in Han characters (romanised text has none, and n-grams do not apply to
    them: their bigrams are already character n-grams). ``romanize``: False, True (= "uroman")
    or a key of ROMANIZATIONS."""
    lang = languages.canonical(lang)
    romanize = "uroman" if romanize is True else romanize or False
    if romanize and romanize not in ROMANIZATIONS:
        raise UsageError(f"unknown romanisation {romanize!r}; choose "
                         f"{' or '.join(ROMANIZATIONS)} (or false)")
    if cjk not in CJK_MODES:
        raise UsageError(f"unknown CJK analysis {cjk!r}; choose {' or '.join(CJK_MODES)}")
    ngram = int(ngram or 0)
    if ngram and ngram not in NGRAMS:
        raise UsageError(f"character n-grams of length {ngram} are not offered; choose "
                         f"{', '.join(map(str, NGRAMS))} (4 is the usual best) or 0 for words")
    han = lang in languages.CJK and not romanize
    return Spec(lang, cjk if han else None, 0 if han else ngram, romanize)

_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u00b4`\u2032"})
_DIGITS = str.maketrans({**{chr(0x0660 + i): str(i) for i in range(10)},
                         **{chr(0x06F0 + i): str(i) for i in range(10)}})
_PERSIAN = str.maketrans({"\u064a": "\u06cc", "\u0649": "\u06cc", "\u0643": "\u06a9",
                          "\u0629": "\u0647", "\u06c0": "\u0647", "\u200c": " ", "\u0640": None,
                          **{chr(c): None for c in range(0x064B, 0x0660)}, "\u0670": None})
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# The regex module's \w holds combining marks (Unicode's definition of a word character), re's
# does not: re splits Devanagari "नमस्ते" at its virama and vowel signs into "नमस", "त" and
# vocalised Arabic at every haraka.
_WORD = regex.compile(r"\w+(?:'\w+)*")
_WORD_CA = regex.compile(r"\w+(?:['\u00b7]\w+)*")  # Catalan l·l (punt volat) stays in a word
_WORD_ZH = regex.compile(rf"([{_CJK}]+)|([^\W{_CJK}]+)")


class Analyzer:
    """text -> list of index terms for one language. Picklable (by its Spec)."""

    def __init__(self, lang, cjk="bigrams", ngram=0, romanize=False):
        self.spec = spec(lang, cjk, ngram, romanize)
        self.lang, self.cjk, self.ngram, self.romanize = self.spec
        self.elision = _ELISION.get(self.lang, set())
        self.word = _WORD_CA if self.lang == "ca" else _WORD
        algorithm = languages.SNOWBALL.get(self.lang)
        plain = self.ngram or self.romanize  # n-grams and romanised text: no stemmer, no stops
        self.stemmer = Stemmer.Stemmer(algorithm, 100_000) if algorithm and not plain else None
        self.uroman = romanizer() if self.romanize else None
        if plain:
            words = ()
        elif self.lang == "en":
            words = _ENGLISH_STOPWORDS
        elif self.lang in SNOWBALL_STOPS:
            words = snowball_stops(SNOWBALL_STOPS[self.lang])
        elif languages.stopword_language(self.lang):
            words = stop_words.get_stop_words(languages.stopword_language(self.lang))
        else:
            words = ()
        # The lists are run through our own normalisation so that they match our tokens.
        self.stopwords = {w for w in (self.normalize(w) for w in words) if _WORD.fullmatch(w)}
        if self.generic and not plain:
            log.warning("no stemmer or stop list for %s (%s): generic analysis (Unicode words, "
                        "lowercase, no stopwords, no stemming)", languages.name(self.lang),
                        self.lang)

    def __reduce__(self):
        return Analyzer, (self.lang, self.cjk or "bigrams", self.ngram, self.romanize)

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
        if self.uroman is not None:
            text = self.uroman(text).translate(_APOSTROPHES)
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
        tokens = [t.replace("'", "") if "'" in t else t for t in tokens if t]
        if self.romanize == "skeleton":
            tokens = [c for c in map(consonants, tokens) if c]  # a lone mark has none
        return ngrams(tokens, self.ngram) if self.ngram else tokens

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


def stop_source(spec):
    """Where an analysis's stop list comes from (recorded with indexes and runs): none for
    n-grams, romanised text, Chinese and languages without a list."""
    if spec.ngram or spec.romanize or spec.cjk:
        return "none"
    if spec.lang == "en":
        return "lucene-english"
    if spec.lang in SNOWBALL_STOPS:
        return f"snowball:{SNOWBALL_STOPS[spec.lang]}"
    code = languages.stopword_language(spec.lang)
    return f"stop-words:{code}" if code else "none"


@functools.lru_cache(maxsize=None)
def snowball_stops(name):
    """The words of a Snowball stop file: a word or several at the start of a line, comments
    after a vertical bar."""
    words = []
    for line in (STOPWORDS_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        words.extend(line.split("|")[0].split())
    return words


def consonants(word):
    """A romanised word's consonant skeleton: without accents and without the vowels a e i o
    u y ("kaleuhnyan" -> "klhnn"); a word of vowels only keeps them ("ia" -> "ia")."""
    plain = "".join(c for c in unicodedata.normalize("NFD", word)
                    if not unicodedata.combining(c))
    return _VOWELS.sub("", plain) or plain


def ngrams(words, n):
    """The character n-grams of each word padded with BOUNDARY; a padded word of n characters
    or fewer is one term ("_a_"), so that no word is lost."""
    terms = []
    for word in words:
        padded = f"{BOUNDARY}{word}{BOUNDARY}"
        if len(padded) <= n:
            terms.append(padded)
        else:
            terms.extend(padded[i:i + n] for i in range(len(padded) - n + 1))
    return terms


class Romanizer:
    """uroman (pure Python, ~250 sentences/s) made practical: each whitespace-separated word is
    romanised once and cached (word frequencies are Zipfian, so most words of a large collection
    are hits). Romanising word by word gave the same text as whole sentences on 4,048 FLORES
    sentences (Serbian Cyrillic, Arabic, Acehnese Jawi, Catalan); uroman's context rules act
    within words. The cache is per process (the index's analysis workers fork after it loads)
    and is emptied when it holds MAX_CACHED words."""
    MAX_CACHED = 2_000_000

    def __init__(self):
        try:
            import uroman
        except ImportError:
            raise UserError("romanisation needs uroman: pip install uroman==" + UROMAN_VERSION) \
                from None
        self.uroman = uroman.Uroman()  # loads its tables: ~4 s
        self.cache = {}

    def word(self, word):
        out = self.cache.get(word)
        if out is None:
            if len(self.cache) >= self.MAX_CACHED:
                self.cache.clear()
            out = self.cache[word] = self.uroman.romanize_string(word)
        return out

    def __call__(self, text):
        return " ".join(self.word(w) for w in text.split())


@functools.lru_cache(maxsize=None)
def romanizer():
    return Romanizer()


@functools.lru_cache(maxsize=None)
def get_analyzer(lang, cjk="bigrams", ngram=0, romanize=False):
    return Analyzer(lang, cjk, ngram, romanize)
