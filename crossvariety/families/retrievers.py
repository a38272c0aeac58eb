"""The neural first-stage families behind ``--model``: BGE-M3 (one vector per document, a
pyterrier-dr FlexIndex, crossvariety.families.bgem3) and ColBERT-XM (token vectors, a PLAID index,
crossvariety.families.colbertxm + crossvariety.families.plaid). The run scripts ask this module for a model's
retriever over a collection; a missing index is built first, as the index scripts would.
"""
import functools
import json
import logging
from pathlib import Path

from .. import provenance
from ..errors import UsageError, UserError
from ..models import MODELS, model_label, resolve_model

log = logging.getLogger(__name__)
FAMILIES = ("bge-m3", "colbert-xm")
# the short names of first-stage models (run scripts' --model, with bm25)
FIRST_STAGE = [m for m in MODELS if m.startswith(FAMILIES)]
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
        from .colbertxm import ColBERTXMEncoder
        return ColBERTXMEncoder(model, language=language, doc_lang_from_config=doc_lang_from_config,
                                dtype=dtype)
    from .bgem3 import BgeM3Encoder
    return BgeM3Encoder(model, max_length=max_length, dtype=dtype)


def index_path(index_dir, model, collection_name, doc_lang_from_config=False):
    """{index_dir}/{model label}/{collection}: one index per model and collection."""
    return Path(index_dir) / label(model, doc_lang_from_config) / collection_name


def collection_language(collection, language=None):
    """ColBERT-XM's adapter language for a collection: ``language``, else what ir_datasets
    records."""
    language = language or collection.docs_lang()
    if not language:
        raise UsageError(f"the language of {collection.spec} is unknown; pass --language "
                         "(fr, nl, fa, ...) for ColBERT-XM's adapter")
    return language


def index_inputs(model, collection, max_length=None):
    """What a neural index is made of: the identities of the model and of the collection, and
    (BGE-M3) the document length. Recorded in the index's metadata."""
    inputs = {"model_id": provenance.model_id(model),
              "tokenizer": provenance.tokenizer_id(model, family(model)),
              "collection": provenance.collection_id(collection)}
    if family(model) == "bge-m3" and max_length is not None:
        inputs["max_length"] = max_length
    return inputs


def index_meta(index):
    """The metadata of a built neural index (BGE-M3: crossvariety.json, ColBERT-XM: meta.json),
    or None if there is none."""
    for name in ("crossvariety.json", "meta.json"):
        if (Path(index) / name).is_file():
            return json.loads((Path(index) / name).read_text())
    return None


def check_index(index, inputs, overwrite=False, fix="--overwrite rebuilds it"):
    """A built index made from other ``inputs`` is an error that names the difference and the
    fix, or with ``overwrite`` is removed (with its chunks) to be built again; an index of an
    older version, with no identities in its metadata, is used with a warning. Returns whether
    the index is there to use."""
    from . import bgem3, plaid
    if not (bgem3.index_built(index) or plaid.index_built(index)):
        return False
    changed = provenance.stale_meta(index_meta(index) or {}, inputs)
    if changed is None:
        log.warning("%s has no record of its model and collection (built by an older version): "
                    "used unchecked; %s", index, fix)
        return True
    if not changed:
        return True
    if not overwrite:
        raise UserError(f"{index} was built from other inputs ({'; '.join(changed)}): {fix}")
    from ..neural.chunks import remove
    log.info("rebuilding %s: %s", index, "; ".join(changed))
    remove(index)
    return False


def run_recipe(model, collection, queries, language=None, doc_lang_from_config=False,
               max_length=1024, dtype="auto", index_dir=None):
    """What makes a first-stage run of a neural model: the model's, the collection's and the
    queries' identities, and the settings that change its results; with ``index_dir``, what
    the built index records of its own making (its documents' precision, ...), if it is
    built."""
    settings = {"dtype": dtype}
    if family(model) == "colbert-xm":
        settings.update(language=collection_language(collection, language),
                        doc_lang_from_config=doc_lang_from_config)
    else:
        settings["max_length"] = max_length
    recipe = {"stage": "retrieve", "model": provenance.model_id(model),
              "tokenizer": provenance.tokenizer_id(model, family(model)),
              "collection": provenance.collection_id(collection),
              "queries": provenance.queries_id(queries), "settings": settings}
    meta = index_meta(index_path(index_dir, model, collection.name, doc_lang_from_config)) \
        if index_dir else None
    if meta:
        recipe["index"] = {k: meta[k] for k in ("dtype", "max_length", "nbits", "kmeans_niters",
                                                "language", "doc_language") if k in meta}
    return recipe


def exact_depth(model):
    """Whether a run of ``model`` must be made at the depth asked: PLAID's search depends on
    the depth (colbert-ai's ncells, ndocs), so a deeper ColBERT-XM run truncated is not the
    shallower run; a BGE-M3 run truncated is."""
    return family(model) == "colbert-xm"


def retriever(model, collection, index_dir, num_results=1000, language=None,
              doc_lang_from_config=False, max_length=1024, dtype="auto", overwrite=False):
    """``model``'s retriever over ``collection`` (a Dataset), its index built if missing, its
    queries (and a missing index's documents) encoded in precision ``dtype``.
    ``language``: the collection's (ColBERT-XM's adapter), by default what ir_datasets says.
    An index built from another model or collection is an error, or with ``overwrite`` is
    rebuilt."""
    index = index_path(index_dir, model, collection.name, doc_lang_from_config)
    fix = "pass --overwrite to rebuild it (and recompute the runs), or another --index-dir"
    if family(model) == "colbert-xm":
        from . import plaid
        language = collection_language(collection, language)
        built = check_index(index, index_inputs(model, collection), overwrite, fix)
        enc = encoder(model, language, doc_lang_from_config, dtype=dtype)
        if not built:
            log.info("no ColBERT-XM index at %s: encoding %s (index_colbertxm.py shards big "
                     "ones)", index, collection.spec)
            # the identities again, now that the model is loaded (in the HF cache)
            plaid.build_index(collection.docs_iter, enc, index, total=collection.docs_count(),
                              inputs=index_inputs(model, collection))
        plaid.check_language(index, enc)
        return plaid.colbert_retriever(index, enc, num_results)
    from . import bgem3
    built = check_index(index, index_inputs(model, collection, max_length), overwrite, fix)
    enc = encoder(model, max_length=max_length, dtype=dtype)
    if not built:
        log.info("no dense index at %s: encoding %s (index_bgem3.py shards big ones)", index,
                 collection.spec)
        # the identities again, now that the model is loaded (in the HF cache)
        bgem3.build_index(collection.docs_iter(), enc, index, total=collection.docs_count(),
                          inputs=index_inputs(model, collection, max_length))
    return bgem3.dense_retriever(index, enc, num_results=num_results)
