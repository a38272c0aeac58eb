"""The language pairs of the paper: a low-resource variety and the related high-resource language.

``highres`` is the ir_datasets code of the high-resource side (Dutch is ``dt`` in mMARCO); the
queries of both sides are analysed with the high-resource analyzer (``analyzer``), as in the paper.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    name: str  # "ca-fr": variety-highres
    variety: str  # code of the low-resource variety (query side)
    highres: str  # ir_datasets code of the high-resource language (document side)
    analyzer: str  # language of crossvariety.analysis used for documents and both query sets
    collection: str  # mMARCO passages in the high-resource language
    dev_queries: str  # dev/small: 6,980 queries with qrels
    train_queries: str  # training queries and qrels (docpairs)
    flores_variety: str  # FLORES-200 code of the variety
    flores_highres: str  # FLORES-200 code of the high-resource language


def _mmarco(name, variety, highres, analyzer, flores_variety, flores_highres):
    return Pair(name, variety, highres, analyzer, f"irds:mmarco/v2/{highres}",
                f"irds:mmarco/v2/{highres}/dev/small", f"irds:mmarco/v2/{highres}/train",
                flores_variety, flores_highres)


PAIRS = {p.name: p for p in [
    _mmarco("ca-fr", "ca", "fr", "fr", "cat_Latn", "fra_Latn"),
    _mmarco("oc-fr", "oc", "fr", "fr", "oci_Latn", "fra_Latn"),
    _mmarco("af-dt", "af", "dt", "nl", "afr_Latn", "nld_Latn"),
    _mmarco("scn-it", "scn", "it", "it", "scn_Latn", "ita_Latn"),
    _mmarco("yue-zh", "yue", "zh", "zh", "yue_Hant", "zho_Hans"),
    _mmarco("ms-id", "ms", "id", "id", "zsm_Latn", "ind_Latn"),
    # English is MS MARCO itself.
    Pair("gd-en", "gd", "en", "en", "irds:msmarco-passage", "irds:msmarco-passage/dev/small",
         "irds:msmarco-passage/train", "gla_Latn", "eng_Latn"),
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
