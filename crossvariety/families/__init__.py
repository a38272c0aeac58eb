"""First-stage families: what ``--model`` means to the run scripts, one module per family.

Every family module answers the same questions, so that no script and no table asks which
family a model is (a new family is one module here plus its line in REGISTRY):

  NAME                   its name in the model registry and the loaders (bm25, bge-m3, ...)
  NEURAL                 whether its index is encoded by a model (a GPU's work; a --dtype)
  names()                the short --model names it offers (for the error of an unknown one)
  claims(model)          whether a --model value (short name, HF id or path) is one of its models
  check(model)           fail now, in one line, if the model cannot be loaded later
  label(model, s)        its name in run-file and index names
  index_path(index_dir, model, collection_name, s)
  index_built(path)      whether a finished index is there
  retriever(model, collection, index_dir, s)    the pt.Transformer; a missing index is built
  recipe(model, collection, queries, index_dir, s)   what makes a run (crossvariety.provenance)
  exact_depth(model)     whether a deeper run truncated differs from the shallower run

``s`` is the run's settings, ``{lowercase name: value}`` as a run script holds them (num_results,
dtype, overwrite, ...) with, per collection, ``language`` (the documents' language as the pair
names it; "" = what ir_datasets records) and ``analyzer`` (the language of text analysis); a
family reads the keys it needs (crossvariety.experiments.settings_of builds it).
"""
import importlib

from ..errors import UsageError

# Asked in this order whether a model is theirs (bge-m3 last: any other HF id or path is one).
# A module is imported when first asked, so that a BM25 run never loads torch.
REGISTRY = [
    "bm25",
    "colbertxm",
    "bgem3",
]


def families():
    """The family modules, in REGISTRY order."""
    return [importlib.import_module(f"{__name__}.{name}") for name in REGISTRY]


def family_of(model):
    """The family module of a --model value; an unknown name is an error listing the names."""
    for family in families():
        if family.claims(model):
            return family
    raise UsageError(f"{model} is not a first-stage model; choose "
                     f"{', '.join(first_stage_names())}, an HF id or a path")


def first_stage_names():
    """Every family's short --model names."""
    return [name for family in families() for name in family.names()]
