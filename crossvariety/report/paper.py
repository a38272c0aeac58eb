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
and the follow-up's (Chari, MacAvaney, Ounis, *Lost in Transliteration*, SIGIR 2025):
  translit-mmarco   native vs romanised queries (mMARCO v2 ru, zh, zh with Anserini's bigrams
                    before romanising) of the original and the fine-tuned (NATIVE, TRANSLIT,
                    50_MIXED) BGE-M3, mT5 re-ranking the original BGE-M3, and both fine-tuned
  translit-neuclir  the same models on neuCLIR 1 ru and zh, human-translated titles
                    (ht_title), TREC 2022 and 2023 topics pooled into one topic set
and, for one experiment config (the FLORES main job, your own pair), the table its run script
prints (``config_cells``).

Where the runs are, and what makes a missing one, comes from the experiment configs: each
config's script says which run files it writes and where (crossvariety.experiments).
"""
import csv
import dataclasses
import functools
import math
from pathlib import Path

import pandas as pd

from .. import provenance
from ..data import pairs
from ..data.datasets import Dataset, dataset_name
from ..errors import UsageError
from ..runs import read_run, run_path
from . import evaluation, followup
from .cells import Cell

PUBLISHED = Path(__file__).parent / "published" / "afdt-models-mmarco.csv"
PUBLISHED_TRANSLIT = Path(__file__).parent / "published" / "translit-models-mmarco.csv"
PAPER_PAIRS = ["ca-fr", "oc-fr", "af-dt", "scn-it", "yue-zh", "ms-id", "gd-en"]
TRAINED = ["ca-fr", "af-dt"]
SYSTEMS = ["bm25", "bge-m3", "mt5", "colbert-xm"]  # rq1; the neural ones are fine-tuned (rq2, rq3)
RERANKS = {"mt5": "bge-m3"}  # the paper's re-rankers and the first stage whose top-1000 they re-rank
NEUMARCO = [f"irds:neumarco/{lang}/dev/small" for lang in ("fa", "ru", "zh")]
NEUCLIR = [f"irds:neuclir/1/{lang}/trec-{year}" for year in (2022, 2023)
           for lang in ("fa", "ru", "zh")]


def finetuned(system, trained):
    """The paper's model of ``system`` fine-tuned on ``trained``: bge-m3-lt-cafr, mt5-lt-afdt."""
    return f"{system}-lt-{trained.replace('-', '')}"


def system_run(system, topics, queries, rename=None):
    """The run file of a system (a model of the paper's tables) for a query set, as the run
    scripts name it: mT5 models re-rank the original BGE-M3's top-1000. ``rename`` maps the
    paper's model names to the labels of one's own runs (bge-m3-lt-cafr -> bge-m3-ft-cafr)."""
    label = (rename or {}).get(system, system)
    name = dataset_name(topics)
    if first_stage_of(system):
        return run_path("", name, first_stage_of(system), queries, f"rerank-{label}").name
    return run_path("", name, label, queries, "retrieve").name


def first_stage_of(model):
    """The first stage a re-ranker of the paper's tables (mt5, mt5-lt-cafr) re-ranks; None for
    a first-stage model."""
    return next((first for system, first in RERANKS.items()
                 if model == system or model.startswith(f"{system}-")), None)


def row_label(model):
    """A model's label in a table row: a re-ranker says what it re-ranks."""
    return f"{first_stage_of(model)} >> {model}" if first_stage_of(model) else model


def _pair_cells(experiment, pair_name, systems, rows, rename):
    """Cells of one pair: for each system, the query sets in ``rows`` [(queries, role, model,
    baseline)]: a cell is tested against the same system's cell of the baseline's (role,
    queries); queries None = any."""
    pair = pairs.PAIRS[pair_name]  # the paper's own definition, whatever a config amends
    cells = []
    for system in systems:
        first = len(cells)
        for queries, role, model, against in rows(pair, system):
            cell = Cell({"pair": pair.name, "model": row_label(model), "queries": queries}, pair.dev_topics,
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
                cells.append(Cell({"dataset": dataset_name(topics), "model": row_label(model),
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
    """The paper's experiments by name (translit-mmarco and translit-neuclir: one table per
    language, named translit-mmarco-ru, ...)."""
    builders = {"rq1": lambda: rq1(rename), "rq2": lambda: rq2(rename),
                "rq3": lambda: rq3(rename), "neumarco": lambda: neu(NEUMARCO, rename),
                "neuclir": lambda: neu(NEUCLIR, rename)}
    builders.update({f"translit-mmarco-{lang}":
                     functools.partial(followup.translit_mmarco, lang, rename)
                     for lang in followup.TRANSLIT_MMARCO})
    builders.update({f"translit-neuclir-{lang}":
                     functools.partial(followup.translit_neuclir, lang, rename)
                     for lang in followup.TRANSLIT_NEUCLIR})
    groups = {"translit-mmarco": [f"translit-mmarco-{lang}" for lang in followup.TRANSLIT_MMARCO],
              "translit-neuclir": [f"translit-neuclir-{lang}"
                                   for lang in followup.TRANSLIT_NEUCLIR]}
    names = [n for name in names for n in groups.get(name, [name])]
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise UsageError(f"unknown experiment(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(list(builders)[:5] + list(groups) + list(builders)[5:])}")
    return {name: builders[name]() for name in dict.fromkeys(names)}


# -- the published numbers ---------------------------------------------------------------------

@functools.cache
def published():
    """{(topics, queries, model, measure): value} of the papers' recoverable numbers (both
    papers' files). A re-ranker over another first stage than its default (RERANKS) is keyed
    "first >> model", as the follow-up's both-fine-tuned rows."""
    values = {}
    for path in (PUBLISHED, PUBLISHED_TRANSLIT):
        with open(path, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                model, first = row["model"], row["first_stage"]
                key = model if not first or first == first_stage_of(model) else f"{first} >> {model}"
                values[(row["collection"], row["queries"], key, row["measure"])] = \
                    float(row["value"])
    return values


def published_value(cell, measure):
    return published().get((cell.topics, cell.queries, cell.model, measure))


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

    def qrels_of(topics):
        if topics not in qrels:
            qrels[topics] = Dataset(topics).qrels().astype({"qid": str, "docno": str})
        return qrels[topics]
    for i, cell in enumerate(cells):
        if cell.pool:  # the topic sets' runs and qrels as one, qids kept apart
            paths = [locate(run) for _, run in cell.pool]
            if None in paths:
                if any(paths):
                    problems.append(f"{cell.run}: part of a pool; "
                                    f"{sum(p is None for p in paths)} of its {len(paths)} runs "
                                    "are missing, so the pool is not evaluated")
                continue
            labels = evaluation.pool_labels(t for t, _ in cell.pool)
            if cell.topics not in qrels:
                qrels[cell.topics] = evaluation.pool_frames(
                    [(label, qrels_of(t)) for label, (t, _) in zip(labels, cell.pool)])
            for path in paths:
                problems += depth_problems(path, measures_of(cell.topics))
            run = evaluation.pool_frames([(label, read_run(path))
                                          for label, path in zip(labels, paths)])
            name = " + ".join(p.name for p in paths)
        else:
            path = locate(cell.run)
            if path is None:
                continue
            qrels_of(cell.topics)
            run = read_run(path)
            problems += depth_problems(path, measures_of(cell.topics))
            name = path.name
        problems += evaluation.coverage_problems(name, run, qrels[cell.topics])
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
            cells.append(_ours(ours, p, alpha))
            cells.append("" if math.isnan(p) else f"{p:.3g}")
            if with_paper:
                cells.append("" if math.isnan(paper) else f"{paper:.4f}")
                cells.append("" if math.isnan(diff) else
                             f"{diff:+.4f}" + (" !" if row[f"{m} flag"] else ""))
        rows.append(cells)
    return _formatted(header, rows, fmt)


def render_by_script(frame, measures, fmt="markdown", alpha=0.05):
    """A follow-up table (``is_script_table``): one row per model, for each measure a column
    per query set (native, romanised): ours with † (differs from the original model on the
    same queries, corrected p < alpha), and the published value beside it where there is one.
    CSV: every number, one row per cell (as ``render``)."""
    if fmt == "csv":
        return render(frame, measures, fmt, alpha)
    scripts = list(dict.fromkeys(frame["script"]))
    keys = [c for c in frame.columns if c not in measures and c not in ("run", "script")
            and not any(c.startswith(f"{m} ") for m in measures)]
    with_paper = {(m, script): frame.loc[frame["script"] == script, f"{m} paper"].notna().any()
                  for m in measures for script in scripts}  # a column only where one was published
    header = list(keys)
    for m in measures:
        for script in scripts:
            header += [f"{m} {script}"] + (["paper"] if with_paper[m, script] else [])
    rows = {}
    for _, row in frame.iterrows():
        key = tuple(str(row[c]) for c in keys)
        cells = rows.setdefault(key, {})
        for m in measures:
            ours, p, paper = row[m], row[f"{m} p"], row[f"{m} paper"]
            cells[m, row["script"]] = (_ours(ours, p, alpha),
                                       "" if math.isnan(paper) else f"{paper:.4f}")
    lines = []
    for key, cells in rows.items():
        line = list(key)
        for m in measures:
            for script in scripts:
                ours, paper = cells.get((m, script), ("", ""))
                line += [ours] + ([paper] if with_paper[m, script] else [])
        lines.append(line)
    return _formatted(header, lines, fmt)


def _ours(value, p, alpha):
    """Our value as a table shows it: 4 decimals, † when its corrected p < alpha."""
    return "–" if math.isnan(value) else \
        f"{value:.4f}" + ("†" if not math.isnan(p) and p < alpha else "")


def _formatted(header, rows, fmt):
    if fmt == "markdown":
        return evaluation.markdown_table(header, rows)
    if fmt == "latex":
        return evaluation.latex_tabular(header, rows)
    raise UsageError(f"unknown table format {fmt!r}; choose markdown, csv or latex")
