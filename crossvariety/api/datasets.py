"""A language pair as a PyTerrier dataset, and the variety's queries as a pipeline stage.

``flores_pair("ca-fr")`` is the FLORES-200 task that ``run_mmarco.py --benchmark flores`` builds
(crossvariety.data.flores), in the same folders: documents in the high-resource language, topics
in either language (same qids), qrels. ``VarietyQueries(variety_topics)`` swaps a frame's
high-resource query for the variety's version of it, by qid, so that one ``pt.Experiment`` over
the high-resource topics measures the gap::

    pt.Experiment([bm25, VarietyQueries(pair.get_topics("ca")) >> bm25], pair.get_topics(),
                  pair.get_qrels(), eval_metrics=[RR@10, R@1000], baseline=0,
                  correction="bonferroni")
"""
from pathlib import Path

import pandas as pd
import pyterrier as pt

from .. import settings
from ..data import flores, languages
from ..data.datasets import Dataset, read_queries
from ..data.pairs import get_pairs


def _queries_frame(queries):
    """(qid, query) strings from a frame, a {qid: query} dict or a query file."""
    if isinstance(queries, pd.DataFrame):
        missing = {"qid", "query"} - set(queries.columns)
        if missing:
            raise ValueError(f"the variety queries need columns qid and query; missing "
                             f"{sorted(missing)}")
        frame = queries[["qid", "query"]]
    elif isinstance(queries, dict):
        frame = pd.DataFrame({"qid": list(queries), "query": list(queries.values())})
    else:
        frame = read_queries(queries)  # a qid<TAB>query file, read strictly
    frame = frame.astype({"qid": str, "query": str})
    duplicated = frame.qid[frame.qid.duplicated()]
    if len(duplicated):
        raise ValueError(f"the variety queries list qids twice: {', '.join(duplicated[:5])}")
    return frame


class VarietyQueries(pt.Transformer):
    """Topics (qid, query) -> the same topics with the variety's query text, by qid; the
    high-resource text is kept in ``query_0`` (pyterrier's convention for rewritten queries).

    ``queries``: the variety's topics (a frame with qid and query, a {qid: text} dict, or a
    ``qid<TAB>query`` file). The comparison is paired: a qid of the input that has no variety
    query is an error, not a skip."""

    def __init__(self, queries):
        frame = _queries_frame(queries)
        self.queries = dict(zip(frame.qid, frame["query"]))

    def __repr__(self):
        return f"VarietyQueries({len(self.queries)} queries)"

    def transform(self, topics):
        pt.validate.columns(topics, includes=["qid", "query"])
        qids = topics.qid.astype(str)
        missing = sorted(set(qids) - set(self.queries))
        if missing:
            raise ValueError(f"{len(missing)} qids have no variety query (e.g. "
                             f"{', '.join(missing[:5])}): the comparison is paired, so every "
                             "topic needs its variety version")
        out = pt.model.push_queries(topics)
        out["query"] = [self.queries[q] for q in qids]
        return out


class PairDataset(pt.datasets.Dataset):
    """A language pair's retrieval task as a PyTerrier dataset: ``get_corpus_iter()`` (the
    high-resource documents), ``get_topics(variant)`` (the high-resource topics by default,
    the variety's with ``variant=pair.variety`` or "variety"; the same qids), ``get_qrels()``;
    ``text_loader()`` for ``pt.text.get_text(pair, "text")``. ``language`` is the documents'
    analysis language (BM25 and ColBERT-XM's adapter)."""

    def __init__(self, pair, collection, topics, variety_queries):
        self.pair = pair
        self.collection = Dataset(collection)
        self.topics = Dataset(topics)
        self.variety_queries = Path(variety_queries)
        self._texts = None

    name = property(lambda self: self.pair.name)
    variety = property(lambda self: self.pair.variety)
    highres = property(lambda self: self.pair.highres)
    language = property(lambda self: self.pair.analyzer)

    def __repr__(self):
        return f"PairDataset({self.pair.name!r}: {self.collection.spec})"

    def info_url(self):
        return None

    def get_corpus_iter(self, verbose=False):
        return iter(self.collection.docs_iter())

    def get_corpus_lang(self):
        return languages.canonical(self.pair.analyzer)

    def _variant(self, variant):
        if variant in (None, "highres", self.pair.highres):
            return "highres"
        if variant in ("variety", self.pair.variety):
            return "variety"
        raise ValueError(f"unknown topics variant {variant!r} of {self.pair.name}: "
                         f"{self.pair.highres!r} (or None, 'highres'), {self.pair.variety!r} "
                         "(or 'variety')")

    def get_topics(self, variant=None):
        highres = self.topics.queries()
        if self._variant(variant) == "highres":
            return highres
        return read_queries(self.variety_queries, known_qids=highres.qid)

    def get_topics_lang(self, variant=None):
        side = self.pair.highres if self._variant(variant) == "highres" else self.pair.variety
        return languages.canonical(side)

    def get_qrels(self, variant=None):
        self._variant(variant)  # the qrels of both query sets are the same
        return self.topics.qrels()

    def text_loader(self, fields="*", *, verbose=False):
        """A transformer adding the documents' ``text`` by docno (``pt.text.get_text``)."""
        if fields not in ("*", "text", ["text"]):
            raise ValueError(f"{self.collection.spec} has one text field, 'text'; asked {fields!r}")
        return pt.apply.generic(self._add_text)

    def _add_text(self, frame):
        if self._texts is None:  # a small collection: read once, kept
            self._texts = {d["docno"]: d["text"] for d in self.collection.docs_iter()}
        missing = sorted(set(frame.docno) - set(self._texts))
        if missing:
            raise ValueError(f"{len(missing)} docnos are not in {self.collection.spec} (e.g. "
                             f"{', '.join(map(str, missing[:5]))})")
        return frame.assign(text=[self._texts[d] for d in frame.docno])


def flores_pair(name, data_dir=None, translations_dir=None, flores_dir=None):
    """The FLORES-200 devtest task of a pair (ca-fr, gl-pt, glg_Latn-por_Latn, ...), as a
    PairDataset, built where run_mmarco.py --benchmark flores builds it (``data_dir``: default
    ./data; ``translations_dir``: default ./data/translations, or {data_dir}/translations when
    ``data_dir`` is given), so both reuse one copy. The paper's 13 languages ship with the
    package (no download); others come from ``flores_dir`` (the FLORES-200 release: its
    .tar.gz, unpacked folder, or a folder of {code}.devtest.gz), as --flores-dir takes it."""
    paths = getattr(settings, "PATHS", {})
    if translations_dir is None:
        translations_dir = Path(data_dir) / "translations" if data_dir is not None else \
            paths.get("translations_dir", "data/translations")
    if data_dir is None:
        data_dir = paths.get("data_dir", "data")
    pair, = get_pairs([name])
    source, codes = flores.find_flores(
        flores_dir, data_dir, [pair.flores_highres or pair.highres,
                               pair.flores_variety or pair.variety])
    dataset_dir, variety_file = flores.build_flores(pair, source, codes, data_dir,
                                                    translations_dir)
    return PairDataset(pair, dataset_dir, dataset_dir, variety_file)
