"""The neural first-stage families behind ``--model``: BGE-M3 (one vector per document, a
pyterrier-dr FlexIndex, crossvariety.dense) and ColBERT-XM (token vectors, a PLAID index,
crossvariety.colbert + crossvariety.plaid). The run scripts ask this module for a model's
retriever over a collection; a missing index is built first, as the index scripts would.
"""
import functools
import logging
from pathlib import Path

from .errors import UsageError
from .models import MODELS, model_label, resolve_model

log = logging.getLogger(__name__)
FAMILIES = ("bge-m3", "colbert-xm")
DOC_LANG_SUFFIX = "-doclang-config"  # ColBERT-XM runs with documents in the saved language


def family(model):
    """bge-m3 or colbert-xm: by short name, by a local checkpoint's files (a ColBERT one has
    artifact.metadata), or by an HF id's cached files or name."""
    if model in MODELS:
        found = next((f for f in FAMILIES if model.startswith(f)), None)
        if found is None:
            raise UsageError(f"{model} is not a first-stage model; choose bm25, "
                             f"{', '.join(m for m in MODELS if m.startswith(FAMILIES))}, "
                             "an HF id or a path")
        return found
    path = resolve_model(model)
    if Path(path).is_dir():
        return "colbert-xm" if (Path(path) / "artifact.metadata").is_file() else "bge-m3"
    from huggingface_hub import try_to_load_from_cache
    cached = try_to_load_from_cache(path, "artifact.metadata")
    return "colbert-xm" if isinstance(cached, str) or "colbert" in path.lower() else "bge-m3"


def label(model, doc_lang_from_config=False):
    """The model's name in run-file and index names; ColBERT-XM runs whose documents were
    encoded with the checkpoint's saved language (the original code's path) say so."""
    colbert_path = doc_lang_from_config and family(model) == "colbert-xm"
    return model_label(model) + (DOC_LANG_SUFFIX if colbert_path else "")


@functools.cache
def encoder(model, language=None, doc_lang_from_config=False, max_length=1024, dtype="auto"):
    """The model's encoder, in precision ``dtype``; ColBERT-XM's with the adapter of
    ``language``."""
    if family(model) == "colbert-xm":
        from .colbert import ColBERTXMEncoder
        return ColBERTXMEncoder(model, language=language, doc_lang_from_config=doc_lang_from_config,
                                dtype=dtype)
    from .dense import BgeM3Encoder
    return BgeM3Encoder(model, max_length=max_length, dtype=dtype)


def index_path(index_dir, model, collection_name, doc_lang_from_config=False):
    """{index_dir}/{model label}/{collection}: one index per model and collection."""
    return Path(index_dir) / label(model, doc_lang_from_config) / collection_name


def retriever(model, collection, index_dir, num_results=1000, language=None,
              doc_lang_from_config=False, max_length=1024, dtype="auto"):
    """``model``'s retriever over ``collection`` (a Dataset), its index built if missing, its
    queries (and a missing index's documents) encoded in precision ``dtype``.
    ``language``: the collection's (ColBERT-XM's adapter), by default what ir_datasets says."""
    index = index_path(index_dir, model, collection.name, doc_lang_from_config)
    if family(model) == "colbert-xm":
        from . import plaid
        language = language or collection.docs_lang()
        if not language:
            raise UsageError(f"the language of {collection.spec} is unknown; pass --language "
                             "(fr, nl, fa, ...) for ColBERT-XM's adapter")
        enc = encoder(model, language, doc_lang_from_config, dtype=dtype)
        if not plaid.index_built(index):
            log.info("no ColBERT-XM index at %s: encoding %s (index_colbertxm.py shards big "
                     "ones)", index, collection.spec)
            plaid.build_index(collection.docs_iter, enc, index, total=collection.docs_count())
        plaid.check_language(index, enc)
        return plaid.colbert_retriever(index, enc, num_results)
    from . import dense
    enc = encoder(model, max_length=max_length, dtype=dtype)
    if not dense.index_built(index):
        log.info("no dense index at %s: encoding %s (index_bgem3.py shards big ones)", index,
                 collection.spec)
        dense.build_index(collection.docs_iter(), enc, index, total=collection.docs_count())
    return dense.dense_retriever(index, enc, num_results=num_results)
