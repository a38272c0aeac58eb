"""The paper's experiments as tables of run files, our values beside the published ones, and the
plan of the runs they need.

An experiment is a list of cells: one run file (named as the run scripts name it), the topics
whose qrels judge it, the published value's key, and the cell it is tested against.

  rq1       the gap: high-resource vs variety queries, per pair and system (BM25, BGE-M3,
            BGE-M3 >> mT5, ColBERT-XM), on mMARCO v2 dev/small
  rq2       original vs fine-tuned models on the pair they were trained on (ca-fr, af-dt)
  rq3       the fine-tuned models zero-shot on the other pairs
  neumarco  original vs fine-tuned BGE-M3, mT5, ColBERT-XM on neuMARCO (English queries, Persian,
  neuclir   Russian, Chinese passages) and neuCLIR (news documents, TREC 2022 and 2023 topics)
and, for one experiment config (the FLORES main job, your own pair), the table its run script
prints (``config_cells``).

Where the runs are, and what makes a missing one, comes from the experiment configs: each
config's settings say which run files its script writes and where (``config_outputs``).
"""
import csv
import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..families import bm25, retrievers
from . import evaluation
from ..data import flores, pairs, translation
from .. import provenance, settings
from ..data.datasets import Dataset, dataset_name
from ..errors import UsageError
from ..models import model_label
from ..runs import read_run, run_path

PUBLISHED = Path(__file__).parent / "published" / "afdt-models-mmarco.csv"
PAPER_PAIRS = ["ca-fr", "oc-fr", "af-dt", "scn-it", "yue-zh", "ms-id", "gd-en"]
TRAINED = ["ca-fr", "af-dt"]
SYSTEMS = ["bm25", "bge-m3", "mt5", "colbert-xm"]  # rq1; the neural ones are fine-tuned (rq2, rq3)
NEUMARCO = [f"irds:neumarco/{lang}/dev/small" for lang in ("fa", "ru", "zh")]
NEUCLIR = [f"irds:neuclir/1/{lang}/trec-{year}" for year in (2022, 2023)
           for lang in ("fa", "ru", "zh")]
# Throughput of the project's GPU paths, measured on one H200 (2026-11-25; the reference files
# in shared/bench-reference): index_bgem3.py's whole path (tokenise, encode, chunk files) on
# XLM-R large at mMARCO passage lengths, rerank_mt5.py's MonoT5ReRanker on mT5-base, TorchSearch.
ENCODE_PASSAGES_PER_S = 3117
RERANK_PAIRS_PER_S = 4151
SEARCH_S_PER_QUERY_SET = 2.5
PASSAGE_TOKENS = 68  # the benchmark's mean passage length; longer documents cost more
DOCUMENT_TOKENS = {"neuclir": 512}  # neuCLIR news (title + text, truncated at 1024): a rough mean


@dataclass
class Cell:
    labels: dict  # the row's label columns, in order ({"pair": "ca-fr", "queries": "ca", ...})
    topics: str  # topics whose qrels judge the run (irds:mmarco/v2/fr/dev/small)
    run: str  # run file name
    model: str  # the model's name in the published numbers (bge-m3, mt5-lt-afdt, ...)
    queries: str  # the query set's language in the published numbers (ca, fr, dt)
    role: str  # highres, variety, translated, original or fine-tuned (for the figures)
    group: str  # cells whose significance tests are corrected together
    baseline: int | None = None  # the cell (index) this one is tested against
    values: dict = field(default_factory=dict)  # measure -> (ours, p-value)


def finetuned(system, trained):
    """The paper's model of ``system`` fine-tuned on ``trained``: bge-m3-lt-cafr, mt5-lt-afdt."""
    return f"{system}-lt-{trained.replace('-', '')}"


def system_run(system, topics, queries, rename=None):
    """The run file of a system (a model of the paper's tables) for a query set, as the run
    scripts name it: mT5 models re-rank the original BGE-M3's top-1000. ``rename`` maps the
    paper's model names to the labels of one's own runs (bge-m3-lt-cafr -> bge-m3-ft-cafr)."""
    label = (rename or {}).get(system, system)
    name = dataset_name(topics)
    if system.startswith("mt5"):
        return run_path("", name, "bge-m3", queries, f"rerank-{label}").name
    return run_path("", name, label, queries, "retrieve").name


def _pair_cells(experiment, pair_name, systems, rows, rename):
    """Cells of one pair: for each system, the query sets in ``rows`` [(queries, role, model,
    baseline)]: a cell is tested against the same system's cell of the baseline's (role,
    queries); queries None = any."""
    pair = pairs.PAIRS[pair_name]  # the paper's own definition, whatever a config amends
    cells = []
    for system in systems:
        first = len(cells)
        for queries, role, model, against in rows(pair, system):
            label = "bge-m3 >> " + model if model.startswith("mt5") else model
            cell = Cell({"pair": pair.name, "model": label, "queries": queries}, pair.dev_topics,
                        system_run(model, pair.dev_topics, queries, rename), model,
                        queries, role, f"{experiment} {pair.name} {system}")
            if against:
                role_of, queries_of = against
                cell.baseline = next(first + i for i, c in enumerate(cells[first:])
                                     if c.role == role_of and queries_of in (None, c.queries))
            cells.append(cell)
    return cells


def _concat(parts):
    """One experiment from lists of cells whose baselines index their own list."""
    cells = []
    for part in parts:
        offset = len(cells)
        cells += [dataclasses.replace(c, baseline=None if c.baseline is None
                                      else c.baseline + offset) for c in part]
    return cells


def rq1(rename=None):
    """The gap of each system: variety vs high-resource queries, per pair."""
    def rows(pair, system):
        return [(pair.highres, "highres", system, None),
                (pair.variety, "variety", system, ("highres", None))]
    return _concat(_pair_cells("rq1", p, SYSTEMS, rows, rename) for p in PAPER_PAIRS)


def _transfer(experiment, trained, pair_names, rename):
    def rows(pair, system):
        tuned = finetuned(system, trained)
        return [(q, role, model, against) for q in (pair.variety, pair.highres)
                for model, role, against in ((system, "original", None),
                                             (tuned, "fine-tuned", ("original", q)))]
    cells = _concat(_pair_cells(experiment, p, SYSTEMS[1:], rows, rename) for p in pair_names)
    for cell in cells:
        cell.labels = {"trained on": trained, **cell.labels}
        cell.group = f"{cell.group} {trained}"
    return cells


def rq2(rename=None):
    """Original vs fine-tuned models on the pair they were trained on."""
    return _concat(_transfer("rq2", t, [t], rename) for t in TRAINED)


def rq3(rename=None):
    """The fine-tuned models zero-shot on the other pairs."""
    return _concat(_transfer("rq3", t, [p for p in PAPER_PAIRS if p != t], rename)
                   for t in TRAINED)


def neu(topic_sets, rename=None, query_field="title"):
    """Original vs fine-tuned BGE-M3 and ColBERT-XM (retrieval) and mT5 (re-ranking BGE-M3's
    top-1000) on neuMARCO or neuCLIR topic sets, as run_neuclir.py writes them."""
    cells = []
    for topics in topic_sets:
        queries = query_field if "neuclir" in topics else "en"
        for system in SYSTEMS[1:]:
            first = len(cells)
            for model in [system] + [finetuned(system, t) for t in TRAINED]:
                label = "bge-m3 >> " + model if model.startswith("mt5") else model
                cells.append(Cell({"dataset": dataset_name(topics), "model": label,
                                   "queries": queries}, topics,
                                  system_run(model, topics, queries, rename), model, queries,
                                  "original" if model == system else "fine-tuned",
                                  f"{topics} {system}", None if model == system else first))
    return cells


def config_cells(outputs):
    """The table of one config, as its run script prints it: run_mmarco.py's gap (each pair's
    variety and translated runs tested against its high-resource run), run_neuclir.py's models
    (each tested against the first)."""
    cells, baselines = [], {}
    for output in outputs:
        if not output.final:
            continue
        if output.role in ("highres", "original"):
            baselines.setdefault(output.group, len(cells))
        cells.append(Cell(output.labels, output.topics, output.path.name, output.published_model,
                          output.queries, output.role, output.group,
                          None if output.role in ("highres", "original")
                          else baselines.get(output.group)))
    return cells


def kind(cell):
    """What a cell's table is: gap (run_mmarco.py), neuclir or neumarco (run_neuclir.py)."""
    if "pair" in cell.labels:
        return "gap"
    return "neuclir" if "neuclir" in cell.topics else "neumarco"


def subset(cells, keep):
    """The cells for which ``keep(cell)`` holds, baselines re-indexed (dropped if left out)."""
    kept = [i for i, c in enumerate(cells) if keep(c)]
    position = {old: new for new, old in enumerate(kept)}
    return [dataclasses.replace(cells[i], baseline=position.get(cells[i].baseline))
            for i in kept]


def experiments(names, rename=None):
    """The paper's experiments by name."""
    builders = {"rq1": lambda: rq1(rename), "rq2": lambda: rq2(rename),
                "rq3": lambda: rq3(rename), "neumarco": lambda: neu(NEUMARCO, rename),
                "neuclir": lambda: neu(NEUCLIR, rename)}
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise UsageError(f"unknown experiment(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(builders)}")
    return {name: builders[name]() for name in names}


# -- the published numbers ---------------------------------------------------------------------

@functools.cache
def published():
    """{(topics, queries, model, measure): value} of the paper's recoverable numbers."""
    with open(PUBLISHED, encoding="utf-8") as f:
        return {(row["collection"], row["queries"], row["model"], row["measure"]):
                float(row["value"]) for row in csv.DictReader(f)}


def published_value(cell, measure):
    return published().get((cell.topics, cell.queries, cell.model, measure))


# -- where the runs are, and what makes them ---------------------------------------------------

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


def config_outputs(config, path_flags=None):
    """The run files that ``run_mmarco.py`` / ``run_neuclir.py --config config`` write;
    ``path_flags`` ({"runs_dir": ...}) override the config's [paths], as they would as flags of
    those scripts."""
    config = str(config)
    tables = settings.config_tables(config)
    outputs = []
    if "run_mmarco" in tables:
        paths, run = settings.experiment_settings(config, "run_mmarco")
        paths.update(path_flags or {})
        command = f"python run_mmarco.py --config {config}"
        reranker = model_label(run["rerank"]) if run["rerank"] else ""
        for pair in pairs.get_pairs(run["pairs"]):
            if run["benchmark"] == "flores":
                topics = collection = str(Path(paths["data_dir"]) /
                                          flores.dataset_name(pair.highres))
            else:
                collection, topics = pair.data(run["collection"], run["topics"])
            if run["model"] == "bm25":
                first, encode = bm25.model_label(pair.analyzer, run["cjk"]), []
            else:
                first = retrievers.label(run["model"], run["doc_lang_from_config"])
                encode = [("encode", run["model"], collection, paths["index_dir"],
                           run["doc_lang_from_config"])]
            query_sets = [(pair.highres, "highres"), (pair.variety, "variety")]
            engine = run["translate_queries"]
            if engine and translation.covers(engine, pair.variety, pair.highres):
                query_sets.append((pair.translated(engine), "translated"))
            # translated-query runs that another config wrote beside these (the FLORES chart)
            prefix = f"{dataset_name(topics)}.{first}.q-"
            for found in sorted(Path(paths["runs_dir"]).glob(
                    f"{prefix}{pair.translated('*')}.retrieve.res.gz")):
                label = found.name[len(prefix):].split(".")[0]
                if label not in [q for q, _ in query_sets]:
                    query_sets.append((label, "translated"))
            for queries, role in query_sets:
                def output(model, stage, published_model, work, final=True):
                    return Output(
                        run_path(paths["runs_dir"], dataset_name(topics), first, queries, stage),
                        command, topics, {"pair": pair.name, "model": model, "queries": queries},
                        queries, role, f"{config} {pair.name}", published_model, final, work)
                if reranker:
                    outputs.append(output(f"{first} >> {reranker}", f"rerank-{reranker}", reranker,
                                          encode + [("rerank", topics, run["rerank_top_k"])]))
                outputs.append(output(first, "retrieve", first, encode, final=not reranker))
    if "run_neuclir" in tables:
        paths, run = settings.experiment_settings(config, "run_neuclir")
        paths.update(path_flags or {})
        command = f"python run_neuclir.py --config {config}"
        doc_lang = run["doc_lang_from_config"]
        first = retrievers.label(run["models"][0], doc_lang) if run["models"] else ""
        for topics in run["datasets"]:
            queries = run["query_field"] if "neuclir" in topics else "en"
            collection = Dataset(topics).collection().spec
            name = dataset_name(topics)

            def output(model, stage, role, group, work, final=True):
                reranked = stage != "retrieve"
                return Output(
                    run_path(paths["runs_dir"], name, first if reranked else
                             retrievers.label(model, doc_lang), queries, stage), command, topics,
                    {"dataset": name, "queries": queries,
                     "model": f"{first} >> {model_label(model)}" if reranked else
                     retrievers.label(model, doc_lang)},
                    queries, role, group, model_label(model), final, work)
            for i, model in enumerate(run["models"]):
                outputs.append(output(model, "retrieve", "fine-tuned" if i else "original",
                                      f"{config} {name} retrieve",
                                      [("encode", model, collection, paths["index_dir"],
                                        doc_lang)],
                                      final=not run["rerank"]))
            for i, reranker in enumerate(run["rerank"]):
                outputs.append(output(
                    reranker, f"rerank-{model_label(reranker)}", "fine-tuned" if i else "original",
                    f"{config} {name} rerank",
                    [("encode", run["models"][0], collection, paths["index_dir"], doc_lang),
                     ("rerank", topics, run["rerank_top_k"])]))
    return outputs


def gpu_seconds(work, encoded=None):
    """Estimated GPU seconds of run files' work on one H200 (the measured throughputs above):
    encoding each collection whose dense index is missing (and not in ``encoded``, the
    collections already counted), re-ranking each query set's top-k, and searching. BM25 needs
    no GPU."""
    seconds = 0.0
    encoded = set() if encoded is None else encoded
    from ..families import bgem3, plaid
    for item in work:
        if item[0] == "encode":
            _, model, collection, index_dir, doc_lang = item
            if (model, collection, doc_lang) in encoded:
                continue
            encoded.add((model, collection, doc_lang))
            index = retrievers.index_path(index_dir, model, dataset_name(collection), doc_lang)
            if bgem3.index_built(index) or plaid.index_built(index):
                continue
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


# -- our values ---------------------------------------------------------------------------------

def depth_problems(path, measures):
    """A run whose record says it was made shallower than a measure's cutoff (R@1000 of a
    10-deep run): the measure is not what its name says."""
    record = provenance.read_record(path) or {}
    depth = record.get("depth")
    cutoffs = [m for m, parsed in evaluation.parse_measures(measures).items()
               if depth is not None and (getattr(parsed, "params", {}) or {}).get("cutoff")
               and parsed.params["cutoff"] > depth]
    return [f"{path.name}: made {depth} deep, so {', '.join(cutoffs)} cannot reach its cutoff; "
            "run its experiment again at the depth of the measures (--num-results)"] \
        if cutoffs else []


def evaluate_cells(cells, locate, measures_of, correction="bonferroni"):
    """Fill each cell's values {measure: (mean, p-value)} from its run file (``locate(name)`` ->
    path or None); p-values of paired t-tests against the baseline cell, corrected within each
    group. Returns the problems found (judged queries missing from runs, ...)."""
    scores, qrels, problems = {}, {}, []
    for i, cell in enumerate(cells):
        path = locate(cell.run)
        if path is None:
            continue
        if cell.topics not in qrels:
            qrels[cell.topics] = Dataset(cell.topics).qrels().astype({"qid": str, "docno": str})
        run = read_run(path)
        problems += evaluation.coverage_problems(path.name, run, qrels[cell.topics])
        problems += depth_problems(path, measures_of(cell.topics))
        scores[i] = evaluation.per_query(run, qrels[cell.topics], measures_of(cell.topics))
    groups = {}
    for i, cell in enumerate(cells):
        if i in scores:
            for m in measures_of(cell.topics):
                cell.values[m] = (float(scores[i][m].mean()), math.nan)
                if cell.baseline is not None and cell.baseline in scores:
                    p = evaluation.paired_pvalue(scores[i][m], scores[cell.baseline][m])
                    groups.setdefault((cell.group, m), []).append((i, p))
    for (_, m), tests in groups.items():
        for (i, _), p in zip(tests, evaluation.correct([p for _, p in tests], correction)):
            cells[i].values[m] = (cells[i].values[m][0], p)
    return problems


def table(cells, measures, tolerance=0.01):
    """A DataFrame of the cells: label columns, then per measure ours, p, paper, diff, flag."""
    rows = []
    for cell in cells:
        row = dict(cell.labels)
        for m in measures:
            ours, p = cell.values.get(m, (math.nan, math.nan))
            paper = published_value(cell, m)
            paper = math.nan if paper is None else paper
            diff = ours - paper
            flag = not math.isnan(diff) and abs(diff) > tolerance
            row.update({m: ours, f"{m} p": p, f"{m} paper": paper, f"{m} diff": diff,
                        f"{m} flag": flag})
        row["run"] = cell.run
        rows.append(row)
    return pd.DataFrame(rows)


def render(frame, measures, fmt="markdown", alpha=0.05):
    """Markdown or LaTeX: ours with † (differs from its baseline row, corrected p < alpha) and
    its p-value (as run_mmarco.py prints them), the published value, and the difference with !
    when it exceeds the tolerance (no such columns when nothing was published); CSV: every
    number. The "queries" label (a language or field) is headed "query set", so that it is not
    read as run_mmarco.py's count of queries."""
    if fmt == "csv":
        return frame.to_csv(index=False, float_format="%.6g")
    labels = [c for c in frame.columns if c not in measures and c != "run"
              and not any(c.startswith(f"{m} ") for m in measures)]
    with_paper = frame[[f"{m} paper" for m in measures]].notna().any().any()
    header = ["query set" if c == "queries" else c for c in labels]
    for m in measures:
        header += [m, f"{m} p", "paper", "Δ"] if with_paper else [m, f"{m} p"]
    rows = []
    for _, row in frame.iterrows():
        cells = [str(row[c]) for c in labels]
        for m in measures:
            ours, p, paper, diff = row[m], row[f"{m} p"], row[f"{m} paper"], row[f"{m} diff"]
            cells.append("–" if math.isnan(ours) else
                         f"{ours:.4f}" + ("†" if not math.isnan(p) and p < alpha else ""))
            cells.append("" if math.isnan(p) else f"{p:.3g}")
            if with_paper:
                cells.append("" if math.isnan(paper) else f"{paper:.4f}")
                cells.append("" if math.isnan(diff) else
                             f"{diff:+.4f}" + (" !" if row[f"{m} flag"] else ""))
        rows.append(cells)
    if fmt == "markdown":
        return evaluation.markdown_table(header, rows)
    if fmt == "latex":
        return evaluation.latex_tabular(header, rows)
    raise UsageError(f"unknown table format {fmt!r}; choose markdown, csv or latex")
