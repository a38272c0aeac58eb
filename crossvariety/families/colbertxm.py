"""The ColBERT-XM family: token vectors over X-MOD with one adapter per language (colbert-ai's
semantics: crossvariety.families.colbert), a PLAID index and its search
(crossvariety.families.plaid); both imported only when a model runs. The interface:
crossvariety.families.
"""
import functools
import logging
from pathlib import Path

from .. import models, provenance
from ..errors import UsageError
from . import indexes

log = logging.getLogger(__name__)
NAME = "colbert-xm"
NEURAL = True
DOC_LANG_SUFFIX = "-doclang-config"  # runs with documents in the checkpoint's saved language


def names():
    return [m for m in models.MODELS if m.startswith(NAME)]


def claims(model):
    """Its short names; a folder with colbert-ai's artifact.metadata; an HF id whose cached
    files hold one, or whose name says colbert."""
    if model in models.MODELS:
        return model.startswith(NAME)
    if not models.is_model_path(model):
        return False
    path = models.resolve_model(model)
    if Path(path).is_dir():
        return (Path(path) / "artifact.metadata").is_file()
    from huggingface_hub import try_to_load_from_cache
    return isinstance(try_to_load_from_cache(path, "artifact.metadata"), str) \
        or "colbert" in path.lower()


def check(model):
    models.check_loadable(model, NAME)


def label(model, s):
    """The model's label; runs whose documents were encoded with the checkpoint's saved
    language (the original code's path, s["doc_lang_from_config"]) say so."""
    return models.model_label(model) + (DOC_LANG_SUFFIX if s.get("doc_lang_from_config") else "")


def index_path(index_dir, model, collection_name, s):
    """{index_dir}/{label}/{collection}: one index per model, document language and collection."""
    return Path(index_dir) / label(model, s) / collection_name


def index_built(path):
    return (Path(path) / "meta.json").is_file()


def exact_depth(model):
    """PLAID's search depends on the depth (colbert-ai's ncells, ndocs): a deeper run truncated
    is not the shallower run."""
    return True


def collection_language(collection, language=None):
    """The adapter language for a collection: ``language``, else what ir_datasets records."""
    language = language or collection.docs_lang()
    if not language:
        raise UsageError(f"the language of {collection.spec} is unknown; pass --language "
                         "(fr, nl, fa, ...) for ColBERT-XM's adapter")
    return language


def index_inputs(model, collection):
    """What an index is made of: the model's and the collection's identities; recorded in the
    index's metadata and compared before it is used."""
    return {"model_id": provenance.model_id(model),
            "tokenizer": provenance.tokenizer_id(model, NAME),
            "collection": provenance.collection_id(collection)}


@functools.cache
def encoder(model, language=None, doc_lang_from_config=False, dtype="auto"):
    """One encoder per model, adapter and settings in a process (both query sets share it)."""
    from .colbert import ColBERTXMEncoder
    return ColBERTXMEncoder(model, language=language, doc_lang_from_config=doc_lang_from_config,
                            dtype=dtype)


def retriever(model, collection, index_dir, s):
    """PLAID search over ``collection``'s index (built first if missing), queries and
    documents with the adapter of s["language"] (default: the collection's)."""
    from . import plaid, plaid_search
    language = collection_language(collection, s.get("language"))
    index = index_path(index_dir, model, collection.name, s)
    built = indexes.check_index(index, index_built, index_inputs(model, collection),
                                s["overwrite"], indexes.FIX)
    enc = encoder(model, language, s["doc_lang_from_config"], dtype=s["dtype"])
    if not built:
        log.info("no ColBERT-XM index at %s: encoding %s (index_colbertxm.py shards big ones)",
                 index, collection.spec)
        # the identities again, now that the model is loaded (in the HF cache)
        plaid.build_index(collection.docs_iter, enc, index, total=collection.docs_count(),
                          inputs=index_inputs(model, collection))
    plaid_search.check_language(index, enc)
    return plaid_search.colbert_retriever(index, enc, s["num_results"])


def recipe(model, collection, queries, index_dir, s):
    settings = {"dtype": s["dtype"],
                "language": collection_language(collection, s.get("language")),
                "doc_lang_from_config": s["doc_lang_from_config"]}
    return indexes.run_recipe(NAME, model, collection, queries, settings,
                              index_path(index_dir, model, collection.name, s) if index_dir
                              else None)
