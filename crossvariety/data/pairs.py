"""Language pairs: a low-resource variety (the queries) and a related high-resource language (the
documents).

The paper's seven pairs are built in (mMARCO v2 dev/small; English is MS MARCO itself). Any
other pair is data, not code:
- a config file defines it in a table (read by crossvariety.settings), e.g.

      [pairs.gl-pt]
      variety = "gl"                       # the queries' language
      highres = "pt"                       # the documents' language
      collection = "data/my-pt-news"       # irds: id or dataset folder
      topics = "data/my-pt-news"           # high-resource queries + qrels (default: collection)
      variety_queries = "data/translations/my-pt-news.gl.tsv"   # optional

  (a table named after a built-in pair amends it: ``[pairs.ca-fr] collection = ...``);
- a name VARIETY-HIGHRES of two language codes (``gl-pt``, or FLORES-200 codes
  ``glg_Latn-por_Latn``) is a pair by itself: the FLORES benchmark needs nothing more, and
  run_mmarco.py takes its collection and topics from --collection / --topics.

Both sides' queries are analysed with the high-resource analyzer (``analyzer``), as in the paper.
"""
import dataclasses
from dataclasses import dataclass

from . import languages
from ..errors import UsageError, UserError


@dataclass(frozen=True)
class Pair:
    name: str  # "ca-fr": variety-highres
    variety: str  # code of the variety (the queries); labels its query set (q-ca)
    highres: str  # code of the high-resource language as the collection's ids write it (dt)
    analyzer: str  # language of the analysis of the documents and of both query sets
    collection: str = ""  # the documents: an irds: id or a dataset folder ("" = not given)
    topics: str = ""  # high-resource queries with qrels ("" = the collection's own)
    variety_queries: str = ""  # the variety's version of the topics ("" = the translations folder)
    train_topics: str = ""  # training queries with qrels, for mine_negatives.py ("" = none)
    flores_variety: str = ""  # FLORES-200 codes ("" = found from the language codes)
    flores_highres: str = ""
    romanize: bool = False  # BM25: romanise queries and documents with uroman (another script)
    skeleton: bool = False  # BM25: romanise, then drop the vowels (an abjad on either side)

    @property
    def dev_topics(self):
        """The topics of the comparison: ``topics``, else the collection's own queries."""
        return self.topics or self.collection

    def data(self, collection="", topics=""):
        """(collection, topics) of the comparison: the given ones (run_mmarco.py --collection,
        --topics; a collection's topics are its own) override the pair's."""
        return collection or self.collection, topics or collection or self.dev_topics

    def translated(self, engine):
        """The label of the variety queries translated back by ``engine`` (ca2fr-apertium)."""
        return f"{self.variety}2{self.highres}-{engine}"


FIELDS = [f.name for f in dataclasses.fields(Pair) if f.name != "name"]
BOOLEAN = {"romanize", "skeleton"}


def _mmarco(name, variety, highres, analyzer):
    return Pair(name, variety, highres, analyzer, f"irds:mmarco/v2/{highres}",
                f"irds:mmarco/v2/{highres}/dev/small",
                train_topics=f"irds:mmarco/v2/{highres}/train")


PAIRS = {p.name: p for p in [
    _mmarco("ca-fr", "ca", "fr", "fr"),
    _mmarco("oc-fr", "oc", "fr", "fr"),
    _mmarco("af-dt", "af", "dt", "nl"),
    _mmarco("scn-it", "scn", "it", "it"),
    _mmarco("yue-zh", "yue", "zh", "zh"),
    _mmarco("ms-id", "ms", "id", "id"),
    # English is MS MARCO itself.
    Pair("gd-en", "gd", "en", "en", "irds:msmarco-passage", "irds:msmarco-passage/dev/small",
         train_topics="irds:msmarco-passage/train"),
]}
# Dutch is "nl" everywhere but in mMARCO's dataset ids.
ALIASES = {"af-nl": "af-dt"}
# Pairs defined or amended by the config file of this run (crossvariety.settings fills it).
DEFINED = {}


def define(name, table, where):
    """Define the pair ``name`` from a config table, or amend the built-in pair of that name.
    ``where`` ("configs/x.toml: [pairs.gl-pt]") prefixes every error."""
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table of keys ({', '.join(FIELDS)})")
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise UsageError(f"{where} has unknown key(s) {', '.join(unknown)}; known keys: "
                        f"{', '.join(FIELDS)}")
    for key, value in table.items():
        kind = bool if key in BOOLEAN else str
        if not isinstance(value, kind):
            raise UsageError(f"{where} {key}: expected {'true or false' if kind is bool else 'a string'}, "
                             f"got {value!r}")
    name = ALIASES.get(name, name)
    base = PAIRS.get(name) or DEFINED.get(name)
    if base is None:
        try:
            base = pair_from_name(name)
        except UserError:
            if not {"variety", "highres"} <= set(table):
                raise UsageError(f"{where}: give variety and highres (language codes), or name "
                                "the table VARIETY-HIGHRES (e.g. [pairs.gl-pt])") from None
            base = Pair(name, table["variety"], table["highres"], table["highres"])
    values = {**dataclasses.asdict(base), **table, "name": name}
    if "highres" in table and "analyzer" not in table:
        values["analyzer"] = table["highres"]
    for key in ("variety", "highres", "analyzer"):
        try:
            code = languages.canonical(values[key])
        except UserError as e:
            raise UsageError(f"{where} {key}: {e}") from None
        if languages.is_flores_code(values[key]):  # glg_Latn: the label is gl, FLORES keeps it
            if key != "analyzer" and not table.get(f"flores_{key}"):
                values[f"flores_{key}"] = values[key]
            values[key] = code
    values.update(_script_labels(values["variety"], values["highres"], values["flores_variety"],
                                 values["flores_highres"]))
    DEFINED[name] = Pair(**values)
    return DEFINED[name]


def _script_labels(variety, highres, flores_variety, flores_highres):
    """One language in two scripts (arb_Latn-arb_Arab, srp_Cyrl-srp_Latn): its two query sets
    and their files are labelled by FLORES code, which a language code alone cannot tell apart."""
    if variety == highres and flores_variety and flores_highres and \
            flores_variety != flores_highres:
        return {"variety": flores_variety, "highres": flores_highres}
    return {}


def pair_from_name(name):
    """The pair named VARIETY-HIGHRES by two language codes (gl-pt, glg_Latn-por_Latn); a
    built-in pair when it has those languages."""
    parts = name.split("-")
    if len(parts) != 2:
        raise UsageError(f"unknown pair {name!r}: a pair is named VARIETY-HIGHRES, e.g. ca-fr")
    variety, highres = (languages.canonical(p) for p in parts)
    for pair in PAIRS.values():
        if (languages.canonical(pair.variety), languages.canonical(pair.highres)) == \
                (variety, highres):
            return pair
    flores_variety = parts[0] if languages.is_flores_code(parts[0]) else ""
    flores_highres = parts[1] if languages.is_flores_code(parts[1]) else ""
    labels = _script_labels(variety, highres, flores_variety, flores_highres)
    variety, highres = labels.get("variety", variety), labels.get("highres", highres)
    return Pair(f"{variety}-{highres}", variety, highres, highres,
                flores_variety=flores_variety, flores_highres=flores_highres)


def known():
    """Every pair this run knows: the built-in ones (as amended) and the defined ones."""
    return {**PAIRS, **DEFINED}


def get_pairs(names):
    """Resolve pair names (or ["all"]: every known pair) to Pair objects, in the order given."""
    pairs = known()
    if list(names) == ["all"]:
        return list(pairs.values())
    resolved = []
    for name in names:
        name = ALIASES.get(name, name)
        if name in pairs:
            resolved.append(pairs[name])
            continue
        try:
            resolved.append(pair_from_name(name))
        except UserError as e:
            raise UsageError(f"unknown language pair {name!r} ({e}); known pairs: "
                            f"{', '.join(pairs)}, 'all', any VARIETY-HIGHRES of language codes "
                            "(gl-pt), or a [pairs.NAME] table in the config") from None
    return resolved
