"""What a built neural index records of its making, checked before the index is used."""
import json
import logging
from pathlib import Path

from .. import provenance
from ..errors import UserError

log = logging.getLogger(__name__)


def index_meta(index):
    """The metadata of a built neural index (BGE-M3: crossvariety.json, ColBERT-XM: meta.json),
    or None if there is none."""
    for name in ("crossvariety.json", "meta.json"):
        if (Path(index) / name).is_file():
            return json.loads((Path(index) / name).read_text())
    return None


def check_index(index, built, inputs, overwrite=False, fix="--overwrite rebuilds it"):
    """A built index (``built(index)``) made from other ``inputs`` is an error that names the
    difference and the fix, or with ``overwrite`` is removed (with its chunks) to be built
    again; an index of an older version, with no identities in its metadata, is used with a
    warning. Returns whether the index is there to use."""
    if not built(index):
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


def run_recipe(family, model, collection, queries, settings, index):
    """What makes a first-stage run of a neural model: the model's, the collection's and the
    queries' identities, the ``settings`` that change its results, and what the built
    ``index`` (None: not asked) records of its own making (its documents' precision, ...)."""
    recipe = {"stage": "retrieve", "model": provenance.model_id(model),
              "tokenizer": provenance.tokenizer_id(model, family),
              "collection": provenance.collection_id(collection),
              "queries": provenance.queries_id(queries), "settings": settings}
    meta = index_meta(index) if index else None
    if meta:
        recipe["index"] = {k: meta[k] for k in ("dtype", "max_length", "nbits", "kmeans_niters",
                                                "language", "doc_language") if k in meta}
    return recipe


FIX = "pass --overwrite to rebuild it (and recompute the runs), or another --index-dir"
