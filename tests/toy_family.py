"""A toy first-stage family, to show what a new family takes: this module, copied into
crossvariety/families/, and its name in REGISTRY (tests/test_families.py does both in a copy of
the repository). A document scores the number of distinct query words it contains."""
from pathlib import Path

import pandas as pd
import pyterrier as pt

from .. import provenance

NAME = "exact"
NEURAL = False


def names():
    return [NAME]


def claims(model):
    return model == NAME


def check(model):
    pass


def label(model, s):
    return NAME


def index_path(index_dir, model, collection_name, s):
    return Path(index_dir) / NAME / collection_name


def index_built(path):
    return False  # no index: the documents are read at each retrieval


def exact_depth(model):
    return False


def words(text):
    return set(text.lower().split())


def retriever(model, collection, index_dir, s):
    docs = [(d["docno"], words(d["text"])) for d in collection.docs_iter()]

    def search(topics):
        rows = []
        for qid, query in zip(topics["qid"], topics["query"]):
            scored = sorted(((len(words(query) & terms), docno) for docno, terms in docs),
                            key=lambda x: (-x[0], x[1]))
            rows += [(qid, query, docno, float(score))
                     for score, docno in scored[:s["num_results"]] if score]
        return pt.model.add_ranks(pd.DataFrame(rows, columns=["qid", "query", "docno", "score"]))
    return pt.apply.generic(search)


def recipe(model, collection, queries, index_dir, s):
    return {"stage": "retrieve", "model": NAME, "collection": provenance.collection_id(collection),
            "queries": provenance.queries_id(queries)}
