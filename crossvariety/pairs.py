"""The language pairs of the paper: a low-resource variety and the related high-resource language.

``highres`` is the ir_datasets code of the high-resource side (Dutch is ``dt`` in mMARCO); the
queries of both sides are analysed with the high-resource analyzer (``analyzer``), as in the paper.
"""
from dataclasses import dataclass

# FLORES-200 codes of the project's languages (NLLB-200 uses the same codes).
FLORES_CODES = {
    "fr": "fra_Latn", "ca": "cat_Latn", "oc": "oci_Latn", "nl": "nld_Latn", "af": "afr_Latn",
    "it": "ita_Latn", "scn": "scn_Latn", "zh": "zho_Hans", "yue": "yue_Hant", "id": "ind_Latn",
    "ms": "zsm_Latn", "en": "eng_Latn", "gd": "gla_Latn", "fa": "pes_Arab", "ru": "rus_Cyrl",
}
LANGUAGE_ALIASES = {"dt": "nl"}  # mMARCO's code for Dutch


def language(code):
    """A language code of the project (dt accepted for Dutch), checked."""
    code = LANGUAGE_ALIASES.get(code, code)
    if code not in FLORES_CODES:
        raise ValueError(f"unknown language {code!r}; known: {', '.join(FLORES_CODES)} (dt = nl)")
    return code


@dataclass(frozen=True)
class Pair:
    name: str  # "ca-fr": variety-highres
    variety: str  # code of the low-resource variety (query side)
    highres: str  # ir_datasets code of the high-resource language (document side)
    analyzer: str  # language of crossvariety.analysis used for documents and both query sets
    collection: str  # mMARCO passages in the high-resource language
    dev_queries: str  # dev/small: 6,980 queries with qrels
    train_queries: str  # training queries and qrels (docpairs)

    @property
    def flores_variety(self):
        return FLORES_CODES[language(self.variety)]

    @property
    def flores_highres(self):
        return FLORES_CODES[language(self.highres)]


def _mmarco(name, variety, highres, analyzer):
    return Pair(name, variety, highres, analyzer, f"irds:mmarco/v2/{highres}",
                f"irds:mmarco/v2/{highres}/dev/small", f"irds:mmarco/v2/{highres}/train")


PAIRS = {p.name: p for p in [
    _mmarco("ca-fr", "ca", "fr", "fr"),
    _mmarco("oc-fr", "oc", "fr", "fr"),
    _mmarco("af-dt", "af", "dt", "nl"),
    _mmarco("scn-it", "scn", "it", "it"),
    _mmarco("yue-zh", "yue", "zh", "zh"),
    _mmarco("ms-id", "ms", "id", "id"),
    # English is MS MARCO itself.
    Pair("gd-en", "gd", "en", "en", "irds:msmarco-passage", "irds:msmarco-passage/dev/small",
         "irds:msmarco-passage/train"),
]}
# Dutch is "nl" everywhere but in mMARCO's dataset ids.
ALIASES = {"af-nl": "af-dt"}


def get_pairs(names):
    """Resolve pair names (or ["all"]) to Pair objects, in the order given."""
    if list(names) == ["all"]:
        return list(PAIRS.values())
    pairs = []
    for name in names:
        name = ALIASES.get(name, name)
        if name not in PAIRS:
            raise ValueError(f"unknown language pair {name!r}; known pairs: {', '.join(PAIRS)} "
                             "(or 'all')")
        pairs.append(PAIRS[name])
    return pairs
