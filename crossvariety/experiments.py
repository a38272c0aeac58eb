"""What an experiment writes: the names of its run files and the plan of the work that makes them.

One source for the run scripts and make_tables.py: run_mmarco.py and run_neuclir.py name their
run files with these functions, and ``config_outputs`` lists the files a config's script writes
from the settings that script itself reports (``settings.experiment_settings``: the script's
--show-config), so that a table and its plan never re-derive a script's rules.

Run files: ``{runs_dir}/{dataset}.{model}.q-{queries}.{stage}.res.gz`` (crossvariety.runs), where
the model is the first-stage family's label (crossvariety.families) and the stage is
``retrieve`` or ``rerank-{reranker}``.
"""
import functools
from dataclasses import dataclass, field
from pathlib import Path

from . import settings
from .data import flores, pairs, translation
from .data.datasets import Dataset, dataset_name
from .families import analysis, family_of
from .models import model_label
from .runs import run_path

# Throughput of the project's GPU paths, measured on one H200 (2026-11-25; the reference files
# in shared/bench-reference): index_bgem3.py's whole path (tokenise, encode, chunk files) on
# XLM-R large at mMARCO passage lengths, rerank_mt5.py's MonoT5ReRanker on mT5-base, TorchSearch.
ENCODE_PASSAGES_PER_S = 3117
RERANK_PAIRS_PER_S = 4151
SEARCH_S_PER_QUERY_SET = 2.5
PASSAGE_TOKENS = 68  # the benchmark's mean passage length; longer documents cost more
DOCUMENT_TOKENS = {"neuclir": 512}  # neuCLIR news (title + text, truncated at 1024): a rough mean


def settings_of(namespace):
    """A script's settings as the families and these functions read them: its UPPERCASE
    constants, {lowercase name: value} (the "settings" of its --show-config)."""
    return {k.lower(): v for k, v in namespace.items() if k.isupper() and not k.startswith("_")
            and isinstance(v, (str, int, float, bool, list))}


def collection_settings(s, language="", analyzer=""):
    """``s`` for one collection: its documents' language as the run names it ("" = what
    ir_datasets records) and the language of its text analysis."""
    return {**s, "language": language, "analyzer": analyzer or language}


def pair_settings(s, pair):
    """``s`` for a pair's collection: its languages, romanised (consonant skeletons) if the
    pair or ``s`` asks."""
    return {**collection_settings(s, pair.highres, pair.analyzer),
            "romanize": analysis.romanization(s.get("romanize") or pair.romanize,
                                              s.get("skeleton") or pair.skeleton)}


def first_stage(s, model=None):
    """The first-stage model's label in file names (``s`` for its collection)."""
    model = model or s["model"]
    return family_of(model).label(model, s)


def stage(reranker=""):
    return f"rerank-{model_label(reranker)}" if reranker else "retrieve"


def gap_query_sets(pair, engine=""):
    """run_mmarco.py's query sets of a pair: (label, role) of the high-resource queries, the
    variety's, and the variety's translated back by ``engine`` if it covers the pair."""
    sets = [(pair.highres, "highres"), (pair.variety, "variety")]
    if engine and translation.covers(engine, pair.variety, pair.highres):
        sets.append((pair.translated(engine), "translated"))
    return sets


def neuclir_queries(topics_spec, query_field, romanized=False):
    """run_neuclir.py's query set label: the topic field (neuCLIR) or en (neuMARCO), with
    -uroman when romanised."""
    return (query_field if "neuclir" in topics_spec else "en") + ("-uroman" if romanized else "")


# -- the plan: the run files a config's script writes, and the GPU work that makes them ---------

@dataclass
class Output:
    """A run file that a config's script writes, and its row in the script's table."""
    path: Path
    command: str
    topics: str
    labels: dict  # the row's label columns
    queries: str  # query set
    role: str  # highres, variety, translated (run_mmarco); original, fine-tuned (run_neuclir)
    group: str  # the rows tested against the group's highres / original row
    published_model: str  # the model's name in the published numbers
    final: bool = True  # the run the table reports (a re-ranked run's first stage: not)
    work: list = field(default_factory=list)  # the GPU work that makes it (see gpu_seconds)


def encode_work(model, collection, index_dir, s):
    """The GPU work of a first stage: encoding the collection, if its family encodes and its
    index is not built yet."""
    family = family_of(model)
    index = family.index_path(index_dir, model, dataset_name(collection), s)
    return [("encode", collection, str(index))] \
        if family.NEURAL and not family.index_built(index) else []


def config_outputs(config, path_flags=None):
    """The run files that ``run_mmarco.py`` / ``run_neuclir.py --config config`` write;
    ``path_flags`` ({"runs_dir": ...}) override the config's [paths], as they would as flags of
    those scripts."""
    config = str(config)
    tables = settings.config_tables(config)
    outputs = []
    if "run_mmarco" in tables:
        paths, s = settings.experiment_settings(config, "run_mmarco")
        paths.update(path_flags or {})
        outputs += _gap_outputs(config, paths, s)
    if "run_neuclir" in tables:
        paths, s = settings.experiment_settings(config, "run_neuclir")
        paths.update(path_flags or {})
        outputs += _neuclir_outputs(config, paths, s)
    return outputs


def _gap_outputs(config, paths, s):
    command = f"python run_mmarco.py --config {config}"
    reranker = model_label(s["rerank"]) if s["rerank"] else ""
    outputs = []
    for pair in pairs.get_pairs(s["pairs"]):
        if s["benchmark"] == "flores":
            topics = collection = str(Path(paths["data_dir"]) / flores.dataset_name(pair.highres))
        else:
            collection, topics = pair.data(s["collection"], s["topics"])
        ps = pair_settings(s, pair)
        first = first_stage(ps)
        encode = encode_work(s["model"], collection, paths["index_dir"], ps)
        query_sets = gap_query_sets(pair, s["translate_queries"])
        # translated-query runs that another config wrote beside these (the FLORES chart)
        prefix = f"{dataset_name(topics)}.{first}.q-"
        for found in sorted(Path(paths["runs_dir"]).glob(
                f"{prefix}{pair.translated('*')}.retrieve.res.gz")):
            label = found.name[len(prefix):].split(".")[0]
            if label not in [q for q, _ in query_sets]:
                query_sets.append((label, "translated"))
        for queries, role in query_sets:
            def output(model, reranked, published_model, work, final=True):
                return Output(
                    run_path(paths["runs_dir"], dataset_name(topics), first, queries,
                             stage(s["rerank"] if reranked else "")),
                    command, topics, {"pair": pair.name, "model": model, "queries": queries},
                    queries, role, f"{config} {pair.name}", published_model, final, work)
            if reranker:
                outputs.append(output(f"{first} >> {reranker}", True, reranker,
                                      encode + [("rerank", topics, s["rerank_top_k"])]))
            outputs.append(output(first, False, first, encode, final=not reranker))
    return outputs


def _neuclir_outputs(config, paths, s):
    command = f"python run_neuclir.py --config {config}"
    outputs = []
    for topics in s["datasets"]:
        queries = neuclir_queries(topics, s["query_field"], s.get("romanize_queries"))
        collection = Dataset(topics).collection().spec
        name = dataset_name(topics)
        cs = collection_settings(s, s["language"])
        first = first_stage(cs, s["models"][0]) if s["models"] else ""
        encode_first = encode_work(s["models"][0], collection, paths["index_dir"], cs) \
            if s["models"] else []
        for i, model in enumerate(s["models"]):
            label = first_stage(cs, model)
            outputs.append(Output(
                run_path(paths["runs_dir"], name, label, queries, "retrieve"), command, topics,
                {"dataset": name, "queries": queries, "model": label}, queries,
                "fine-tuned" if i else "original", f"{config} {name} retrieve",
                model_label(model), not s["rerank"],
                encode_work(model, collection, paths["index_dir"], cs)))
        for i, reranker in enumerate(s["rerank"]):
            outputs.append(Output(
                run_path(paths["runs_dir"], name, first, queries, stage(reranker)), command,
                topics, {"dataset": name, "queries": queries,
                         "model": f"{first} >> {model_label(reranker)}"}, queries,
                "fine-tuned" if i else "original", f"{config} {name} rerank",
                model_label(reranker), True,
                encode_first + [("rerank", topics, s["rerank_top_k"])]))
    return outputs


def gpu_seconds(work, encoded=None):
    """Estimated GPU seconds of run files' work on one H200 (the measured throughputs above):
    encoding each collection whose index is missing (and not in ``encoded``, the indexes
    already counted), re-ranking each query set's top-k, and searching. BM25 needs no GPU."""
    seconds = 0.0
    encoded = set() if encoded is None else encoded
    for item in work:
        if item[0] == "encode":
            _, collection, index = item
            if index in encoded:
                continue
            encoded.add(index)
            # ColBERT-XM's encoding is not measured on a GPU yet: BGE-M3's rate (XLM-R large,
            # a wider model than X-MOD base) stands in as a pessimistic estimate
            tokens = next((t for k, t in DOCUMENT_TOKENS.items() if k in collection),
                          PASSAGE_TOKENS)
            seconds += _count(collection, "docs") * tokens / PASSAGE_TOKENS / ENCODE_PASSAGES_PER_S
            seconds += SEARCH_S_PER_QUERY_SET
        else:
            _, topics, top_k = item
            seconds += _count(topics, "queries") * top_k / RERANK_PAIRS_PER_S
    return seconds


@functools.cache
def _count(spec, what):
    """Documents or queries of a dataset, from ir_datasets' metadata (no download)."""
    if not str(spec).startswith("irds:"):
        return 0  # a local folder: small, and not worth reading to estimate
    import ir_datasets
    dataset = ir_datasets.load(spec[len("irds:"):])
    try:
        return dataset.docs_count() if what == "docs" else dataset.queries_count()
    except AttributeError:
        return 0
