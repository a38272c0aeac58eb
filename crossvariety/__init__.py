"""crossvariety: retrieval with low-resource-variety queries over high-resource documents.

The stage scripts of the repository import its modules (``from crossvariety import settings``);
notebooks use the PyTerrier API below, drop-in for the libraries the paper used (pyterrier_pisa,
pyterrier-dr, pyterrier-t5), built on the repository's fast paths::

    import pyterrier as pt
    import crossvariety
    pair = crossvariety.flores_pair("ca-fr")            # FLORES-200, shipped: offline
    index = crossvariety.Bm25Index("indexes/flores-fr.bm25", language=pair.language)
    bm25 = index.bm25(num_results=1000)
    pt.Experiment([bm25, crossvariety.VarietyQueries(pair.get_topics("ca")) >> bm25], ...)

The names are imported on first use (PEP 562): ``import crossvariety`` loads neither torch nor
PyTerrier, so the scripts that import the package's light modules stay fast.
"""
import importlib

# name -> the module that defines it (crossvariety.api.*)
_API = {
    "Bm25Index": "bm25",
    "BGEM3": "bgem3",
    "DenseIndex": "bgem3",
    "mT5ReRanker": "mt5",
    "ColBERTXM": "colbertxm",
    "PlaidIndex": "colbertxm",
    "VarietyQueries": "datasets",
    "PairDataset": "datasets",
    "flores_pair": "datasets",
}
__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        value = getattr(importlib.import_module(f"{__name__}.api.{_API[name]}"), name)
        globals()[name] = value  # once: later look-ups do not come here
        return value
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("crossvariety")
        except PackageNotFoundError:  # the checkout, not installed
            return "0+checkout"
    # a submodule not imported yet (``from crossvariety import settings``): the import system
    # imports it after this AttributeError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
