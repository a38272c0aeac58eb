"""Evaluation: ir_measures per query, coverage checks, paired t-tests with multiple-test correction.

Queries judged in the qrels but missing from a run score 0 (trec_eval -c), as in pt.Experiment;
unlike a silent evaluation, every such gap is reported (see ``coverage_problems``). A document
ranked twice for a query, a document judged twice for a query, and a NaN or infinite score are
errors, as trec_eval refuses the duplicates (ir_measures would keep the last one silently, and
rank a NaN first).
"""
import math

import ir_measures
import numpy as np
import pandas as pd

from ..errors import UsageError, UserError
from ..runs import check_scores, duplicate_row

MMARCO_MEASURES = ["MRR@10", "R@1000"]
NEUCLIR_MEASURES = ["nDCG@20", "R@1000"]
CORRECTIONS = ["bonferroni", "holm", "holm-sidak", "fdr_bh", "none"]


def default_measures(dataset_spec):
    return NEUCLIR_MEASURES if "neuclir" in str(dataset_spec) else MMARCO_MEASURES


def parse_measures(names):
    parsed = {}
    for name in names:
        try:
            parsed[name] = ir_measures.parse_measure(name)
        except Exception:
            raise UsageError(f"unknown measure {name!r}; use ir_measures names such as "
                             "MRR@10, RR@10, R@1000, nDCG@20, AP, P@10") from None
    return parsed


class NoResults(str):
    """The problem "judged queries with no results": its line, and its numbers for a summary."""

    def __new__(cls, name, missing, judged):
        line = super().__new__(cls, f"{name}: no results for {len(missing)} of {judged} judged "
                                    f"queries (each scored 0): qids {', '.join(missing[:8])}"
                                    + (" ..." if len(missing) > 8 else ""))
        line.name, line.count, line.judged = name, len(missing), judged
        return line


def coverage_problems(name, run, qrels):
    """What about a run does not fit the qrels: missing or unknown qids, unjudged docnos."""
    problems = []
    judged_qids = set(qrels.qid.tolist())
    run_qids = set(run.qid.tolist())
    missing = sorted(judged_qids - run_qids)
    if missing:
        problems.append(NoResults(name, missing, len(judged_qids)))
    extra = run_qids - judged_qids
    if extra:
        problems.append(f"{name}: {len(extra)} of its {len(run_qids)} queries have no qrels and "
                        f"are not scored (wrong qrels? e.g. qid {sorted(extra)[0]})")
    if len(run) and not set(run.docno.unique().tolist()) & set(qrels.docno.tolist()):
        problems.append(f"{name}: none of its docnos appears in the qrels; is it a run over "
                        "another collection, or are the docnos formatted differently?")
    return problems


def summarise_no_results(problems):
    """(one line for every "no results" problem, the other problems): queries that retrieve
    nothing (a variety query sharing no term with the collection) are expected and already in
    the scores, so a report names them once, not once per run."""
    counts = [(p.name, p.count, p.judged) for p in problems if isinstance(p, NoResults)]
    others = [p for p in problems if not isinstance(p, NoResults)]
    if not counts:
        return None, others
    totals = {total for _, _, total in counts}
    line = ("queries with no results, each scored 0 in the table (no term in common with the "
            "collection): " + ", ".join(f"{name} {n}" for name, n, _ in counts) +
            (f" of {totals.pop()} each" if len(totals) == 1 else ""))
    return line, others


def log_problems(problems, log):
    """Report coverage problems: the "no results" ones summarised in one info line (expected, and
    in the scores), every other one as a warning."""
    no_results, others = summarise_no_results(problems)
    if no_results:
        log.info(no_results)
    for problem in others:
        log.warning(problem)


def per_query(run, qrels, measures):
    """DataFrame (qid x measure name) over every judged query; missing queries score 0."""
    parsed = parse_measures(measures)
    # ir_measures' dict-of-dicts input: its DataFrame path walks the rows one by one (slow for
    # a 7M-row run); plain lists zip fast.
    qrels_dict, run_dict = {}, {}
    for qid, docno, label in zip(qrels.qid.tolist(), qrels.docno.tolist(), qrels.label.tolist()):
        qrels_dict.setdefault(qid, {})[docno] = int(label)
    for qid, docno, score in zip(run.qid.tolist(), run.docno.tolist(), run.score.tolist()):
        run_dict.setdefault(qid, {})[docno] = float(score)
    by_measure = {m: name for name, m in parsed.items()}
    values = {}
    for metric in ir_measures.iter_calc(list(parsed.values()), qrels_dict, run_dict):
        values[(metric.query_id, by_measure[metric.measure])] = metric.value
    qids = sorted(qrels_dict)
    table = pd.DataFrame({name: [values.get((q, name), 0.0) for q in qids] for name in measures},
                         index=pd.Index(qids, name="qid"))
    return table


def evaluate(runs, qrels, measures, baseline=0, correction="bonferroni"):
    """Evaluate named runs against qrels.

    runs: {name: DataFrame(qid, docno, score)}; baseline: index of the baseline run, or None.
    Returns (table, per-query DataFrame in long form, problems). The table has one row a run,
    the mean of each measure, and for each measure its p-value against the baseline (paired
    t-test over the judged queries, corrected across the non-baseline runs).
    """
    if correction not in CORRECTIONS:
        raise UsageError(f"unknown correction {correction!r}; choose from {CORRECTIONS}")
    qrels = qrels.astype({"qid": str, "docno": str})
    row = duplicate_row(qrels)
    if row is not None:
        raise UserError(f"the qrels judge qid {qrels.qid.iat[row]} docno {qrels.docno.iat[row]} "
                        "twice; keep one judgement per query and document (trec_eval refuses "
                        "duplicates too)")
    names = list(runs)
    problems, scores = [], {}
    for name in names:
        run = runs[name].astype({"qid": str, "docno": str})
        check_scores(run, f"run {name}")  # a NaN would rank first
        row = duplicate_row(run)
        if row is not None:  # ir_measures would keep the last score silently
            raise UserError(f"run {name} ranks docno {run.docno.iat[row]} twice for qid "
                            f"{run.qid.iat[row]}; a run ranks a document once per query "
                            "(trec_eval refuses duplicates too)")
        problems.extend(coverage_problems(name, run, qrels))
        if not set(run.qid) & set(qrels.qid):
            raise UserError(f"run {name} shares no query with the qrels: nothing to evaluate "
                            "(is it a run of another dataset?)")
        scores[name] = per_query(run, qrels, measures)

    table = pd.DataFrame({m: [scores[n][m].mean() for n in names] for m in measures},
                         index=pd.Index(names, name="run"))
    table.insert(0, "queries", [len(scores[n]) for n in names])
    if baseline is not None and len(names) > 1:
        base = names[baseline]
        others = [n for n in names if n != base]
        for m in measures:
            pvalues = correct([paired_pvalue(scores[n][m], scores[base][m]) for n in others],
                              correction)
            table[f"{m} p"] = [math.nan if n == base else pvalues[others.index(n)] for n in names]
    long = pd.concat([scores[n].reset_index().melt(id_vars="qid", var_name="measure")
                      .assign(run=n) for n in names])[["run", "qid", "measure", "value"]]
    return table, long, problems


def paired_pvalue(scores, baseline_scores):
    """p-value of a two-sided paired t-test of per-query scores (Series on the same qids)."""
    from scipy import stats  # 1 s to import: only when there is a test to run
    a, b = scores.to_numpy(), baseline_scores.to_numpy()
    return 1.0 if np.array_equal(a, b) else stats.ttest_rel(a, b).pvalue


def correct(pvalues, correction):
    """p-values corrected for multiple tests (statsmodels' methods, or none)."""
    if correction not in CORRECTIONS:
        raise UsageError(f"unknown correction {correction!r}; choose from {CORRECTIONS}")
    pvalues = [1.0 if math.isnan(p) else p for p in pvalues]  # identical scores: no difference
    if correction == "none" or len(pvalues) < 2:
        return pvalues
    from statsmodels.stats.multitest import multipletests
    return list(multipletests(pvalues, method=correction)[1])


CORRECTION_TEXT = {"bonferroni": "Bonferroni-corrected", "holm": "Holm-corrected",
                   "holm-sidak": "Holm-Sidak-corrected", "fdr_bh": "Benjamini-Hochberg-adjusted",
                   "none": "uncorrected"}


def significance_note(baseline, rows, correction="bonferroni", alpha=0.05):
    """The sentence under a table that says what † and p mean: against which ``baseline``, the
    correction and the ``rows`` it is applied over."""
    return (f"† = differs from {baseline} (paired t-test per measure; p {CORRECTION_TEXT[correction]} "
            f"over {rows}; † when p < {alpha:g}).")


def format_table(table, fmt="markdown", alpha=0.05, digits=4):
    """Render an evaluation table as markdown, csv or latex. In markdown and latex a dagger marks
    a mean that differs from the baseline's with corrected p < alpha."""
    if fmt == "csv":
        return table.to_csv(float_format=f"%.{digits}g")
    measures = [c for c in table.columns if c != "queries" and not c.endswith(" p")]
    header = [table.index.name or "run", "queries"]
    for m in measures:
        header += [m] + ([f"{m} p"] if f"{m} p" in table.columns else [])
    rows = []
    for name, row in table.iterrows():
        cells = [str(name), str(int(row["queries"]))]
        for m in measures:
            p = row.get(f"{m} p", math.nan)
            mark = "†" if not math.isnan(p) and p < alpha else ""
            cells.append(f"{row[m]:.{digits}f}{mark}")
            if f"{m} p" in table.columns:
                cells.append("" if math.isnan(p) else f"{p:.3g}")
        rows.append(cells)
    if fmt == "markdown":
        return markdown_table(header, rows)
    if fmt == "latex":
        return latex_tabular(header, rows)
    raise UsageError(f"unknown table format {fmt!r}; choose markdown, csv or latex")


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def latex_escape(text):
    return (text.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("&", "\\&")
            .replace("%", "\\%").replace("#", "\\#").replace("†", "$^\\dagger$")
            .replace("Δ", "$\\Delta$").replace("–", "--"))


def latex_tabular(header, rows):
    """A booktabs tabular of text cells: the first column left-aligned, the rest right."""
    lines = ["\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\toprule",
             " & ".join(latex_escape(h) for h in header) + " \\\\", "\\midrule"]
    lines += [" & ".join(latex_escape(c) for c in r) + " \\\\" for r in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


# -- pooled topic sets (the follow-up's neuCLIR trec-2022 + trec-2023 as one) --------------------

def pool_labels(topic_specs):
    """The prefix that keeps each topic set's qids apart in a pool: the last part of its id
    (``trec-2022`` of irds:neuclir/1/ru/trec-2022, a folder's name); the whole spec where two
    sets share that part. Topic ids of TREC years collide (both years have topic 0, ...):
    unprefixed, a 2022 run would be scored against 2023 judgements."""
    specs = [str(s) for s in topic_specs]
    short = [s.rstrip("/").split("/")[-1] for s in specs]
    labels = [t if short.count(t) == 1 else s for s, t in zip(specs, short)]
    if len(set(labels)) != len(labels):
        raise UsageError(f"a pool lists the same topic set twice: {', '.join(specs)}")
    return labels


def pool_frames(parts):
    """One frame (a run or qrels) from several topic sets' [(label, frame)]: the rows of all,
    each qid written ``{label}/{qid}``."""
    frames = [frame.astype({"qid": str}).assign(qid=lambda f, label=label: label + "/" + f.qid)
              for label, frame in parts]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def pool_spec(topic_specs):
    """The name of a pool of topic sets, as tables and the published numbers key it:
    ``irds:neuclir/1/ru/trec-2022+trec-2023`` (the shared prefix once), else the specs joined
    by `` + ``."""
    specs = [str(s) for s in topic_specs]
    heads = {s.rsplit("/", 1)[0] for s in specs}
    if len(heads) == 1 and all("/" in s for s in specs):
        return heads.pop() + "/" + "+".join(s.rsplit("/", 1)[1] for s in specs)
    return " + ".join(specs)
