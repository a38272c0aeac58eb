"""The BGE-M3 family: one dense vector per document (FlagEmbedding's semantics), a pyterrier-dr
FlexIndex, exhaustive search (crossvariety.families.dense holds the encoder, index and search;
imported only when a model runs). The interface: crossvariety.families.
"""
import functools
import logging
from pathlib import Path

from .. import models, provenance
from . import indexes

log = logging.getLogger(__name__)
NAME = "bge-m3"
NEURAL = True


def names():
    return [m for m in models.MODELS if m.startswith(NAME)]


def claims(model):
    """Its short names, and any other HF id or path (asked after the other families)."""
    return model.startswith(NAME) if model in models.MODELS else models.is_model_path(model)


def check(model):
    models.check_loadable(model, NAME)


def label(model, s):
    return models.model_label(model)


def index_path(index_dir, model, collection_name, s):
    """{index_dir}/{model label}/{collection}: one index per model and collection."""
    return Path(index_dir) / label(model, s) / collection_name


def index_built(path):
    return (Path(path) / "pt_meta.json").is_file()


def exact_depth(model):
    return False  # exhaustive search: a deeper run truncated is the shallower run


def index_inputs(model, collection, max_length=None):
    """What an index is made of: the model's and the collection's identities, the document
    length; recorded in the index's metadata and compared before it is used."""
    inputs = {"model_id": provenance.model_id(model),
              "tokenizer": provenance.tokenizer_id(model, NAME),
              "collection": provenance.collection_id(collection)}
    if max_length is not None:
        inputs["max_length"] = max_length
    return inputs


@functools.cache
def encoder(model, max_length=1024, dtype="auto"):
    """One encoder per model and settings in a process: both query sets of a pair share it."""
    from .dense import BgeM3Encoder
    return BgeM3Encoder(model, max_length=max_length, dtype=dtype)


def retriever(model, collection, index_dir, s):
    """Dense search over ``collection``'s index (built first if missing: encoding it in
    precision s["dtype"]); an index of other model files or documents is an error, or with
    s["overwrite"] is rebuilt."""
    from . import dense
    index = index_path(index_dir, model, collection.name, s)
    built = indexes.check_index(index, index_built,
                                index_inputs(model, collection, s["max_length"]),
                                s["overwrite"], indexes.FIX)
    enc = encoder(model, max_length=s["max_length"], dtype=s["dtype"])
    if not built:
        log.info("no dense index at %s: encoding %s (index_bgem3.py shards big ones)", index,
                 collection.spec)
        # the identities again, now that the model is loaded (in the HF cache)
        dense.build_index(collection.docs_iter(), enc, index, total=collection.docs_count(),
                          inputs=index_inputs(model, collection, s["max_length"]))
    return dense.dense_retriever(index, enc, num_results=s["num_results"])


def recipe(model, collection, queries, index_dir, s):
    return indexes.run_recipe(NAME, model, collection, queries,
                              {"dtype": s["dtype"], "max_length": s["max_length"]},
                              index_path(index_dir, model, collection.name, s) if index_dir
                              else None)
