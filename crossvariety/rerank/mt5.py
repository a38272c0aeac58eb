"""The mT5 re-ranker family (monoT5: unicamp-dl/mt5-base-mmarco-v2 and its fine-tuned copies);
crossvariety.rerank.monot5 holds the re-ranker, imported only when it runs. The interface:
crossvariety.rerank.
"""
import functools

from .. import models, provenance

NAME = "mt5"


def names():
    return [m for m in models.MODELS if m.startswith(NAME)]


def claims(model):
    """Its short names, and any other HF id or path."""
    return model.startswith(NAME) if model in models.MODELS else models.is_model_path(model)


def check(model, s):
    models.check_loadable(model, NAME, s.get("tokenizer") or None)


@functools.cache
def reranker(model, dtype="auto", tok_model=None):
    """One re-ranker per model and settings in a process."""
    from .monot5 import MonoT5ReRanker
    return MonoT5ReRanker(model, dtype=dtype, tok_model=tok_model)


def rerank(model, run, queries, collection, s):
    """The top s["rerank_top_k"] of each query of ``run`` re-ranked, in precision s["dtype"]."""
    from .monot5 import attach_text
    return reranker(model, s["dtype"], s.get("tokenizer") or None)(
        attach_text(run, queries, collection, s["rerank_top_k"]))


def recipe(model, run, queries, collection, s):
    return provenance.rerank_recipe(model, run, queries, collection, s["rerank_top_k"],
                                    s["dtype"], s.get("tokenizer") or None)
