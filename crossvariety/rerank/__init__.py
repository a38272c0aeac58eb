"""Re-ranker families: what ``--rerank`` means to the run scripts, one module per family, each
answering the same questions (a new family is one module here plus its line in REGISTRY):

  NAME                   its name in the model registry and the loaders (mt5)
  names()                the short --rerank names it offers
  claims(model)          whether a --rerank value (short name, HF id or path) is one of its models
  check(model, s)        fail now, in one line, if the model cannot be loaded later
  rerank(model, run, queries, collection, s)    the run's top s["rerank_top_k"] re-ranked
  recipe(model, run, queries, collection, s)    what makes the re-ranked run (provenance)

``s``: the run's settings, {lowercase name: value} (crossvariety.experiments.settings_of).
"""
import importlib

from ..errors import UsageError

# Asked in this order whether a model is theirs; imported when first asked.
REGISTRY = [
    "mt5",
]


def family_of(model):
    """The re-ranker family module of a --rerank value."""
    families = [importlib.import_module(f"{__name__}.{name}") for name in REGISTRY]
    for family in families:
        if family.claims(model):
            return family
    raise UsageError(f"{model} is not a re-ranker; choose "
                     f"{', '.join(n for f in families for n in f.names())}, an HF id or a path")
