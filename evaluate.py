"""Evaluate TREC run files against a dataset's qrels, with significance tests against a baseline.

Each run is scored per query with ir_measures over every judged query (a judged query missing
from a run scores 0); the table holds each measure's mean and, for every run but the baseline,
the p-value of a paired t-test against the baseline, corrected across the runs (Bonferroni by
default). Runs whose qids or docnos do not match the qrels are reported, never silently scored.
A document ranked twice for one query in a run, or judged twice for one query in the qrels, is
an error naming both lines, as in trec_eval (ir_measures would keep the last one silently); so
is a NaN or infinite score (it would rank first).

Examples:
  python evaluate.py runs/mmarco-v2-fr-dev-small.bm25.q-fr.retrieve.res.gz \\
                     runs/mmarco-v2-fr-dev-small.bm25.q-ca.retrieve.res.gz \\
                     --qrels irds:mmarco/v2/fr/dev/small
  python evaluate.py A.res.gz B.res.gz --qrels irds:neuclir/1/fa/trec-2022 --format latex
  python evaluate.py A.res.gz B.res.gz --qrels data/flores200-devtest-fr --per-query pq.tsv
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
RUNS = []  # TREC run files to evaluate, plain or gzipped (.res, .res.gz)
QRELS = ""  # dataset whose qrels judge the runs: an irds: id (irds:mmarco/v2/fr/dev/small) or a
            # local dataset folder with qrels.txt[.gz]
NAMES = []  # a label for each run, in order; empty = the run file names
MEASURES = []  # ir_measures measure names, e.g. MRR@10 R@1000 nDCG@20 AP; empty = MRR@10 R@1000, or
               # nDCG@20 R@1000 for neuCLIR qrels
BASELINE = "1"  # the run the others are tested against: its position among RUNS (1 = first), or
                # none for no significance tests
CORRECTION = "bonferroni"  # multiple-testing correction: bonferroni holm holm-sidak fdr_bh none
ALPHA = 0.05  # significance level; a mean with corrected p < alpha is marked †
FORMAT = "markdown"  # table format: markdown, csv or latex
OUT = ""  # file to write the table to (besides printing it)
PER_QUERY = ""  # file to write per-query scores to, as TSV (run, qid, measure, value)
settings.configure(globals(), positional=("RUNS",), path_keys=())  # files by path only
# -----------------------------------------------------------------------------
import logging
import sys
from pathlib import Path

from crossvariety.report import evaluation
from crossvariety.data.datasets import Dataset
from crossvariety.errors import UsageError
from crossvariety.runs import atomic_path, check_writable, read_run, write_text

log = logging.getLogger("evaluate")
if not RUNS:
    raise UsageError("name at least one run file, e.g. evaluate.py RUN.res.gz --qrels DATASET")
if not QRELS:
    raise UsageError("--qrels DATASET is required (an irds: id or a dataset folder)")
if NAMES and len(NAMES) != len(RUNS):
    raise UsageError(f"{len(NAMES)} names for {len(RUNS)} runs; give one name per run")
if FORMAT not in ("markdown", "csv", "latex"):
    raise UsageError(f"unknown format {FORMAT!r}; choose markdown, csv or latex")
if BASELINE.lower() == "none":
    baseline = None
elif BASELINE.isdigit() and 1 <= int(BASELINE) <= len(RUNS):
    baseline = int(BASELINE) - 1
else:
    raise UsageError(f"--baseline {BASELINE!r} is not a run position from 1 to {len(RUNS)} or "
                     "none")
measures = MEASURES or evaluation.default_measures(QRELS)
evaluation.parse_measures(measures)
for output, option in ((OUT, "--out"), (PER_QUERY, "--per-query")):
    if output:
        check_writable(output, option=option)
names = NAMES or [Path(r).name.removesuffix(".gz").removesuffix(".res") for r in RUNS]
if len(set(names)) != len(names):
    raise UsageError("two runs share a name; label them with --names")
qrels = Dataset(QRELS).qrels()  # before the runs, which can be large
runs = {name: read_run(path) for name, path in zip(names, RUNS)}
log.info("read %d runs; %d qrels for %d queries from %s", len(runs), len(qrels),
         qrels.qid.nunique(), QRELS)
table, per_query, problems = evaluation.evaluate(runs, qrels, measures, baseline=baseline,
                                                 correction=CORRECTION)

text = evaluation.format_table(table, FORMAT, alpha=ALPHA)
print(text, end="")
if problems:
    print("\nProblems (judged queries missing from a run scored 0):", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
if OUT:
    write_text(OUT, text)
    log.info("wrote %s", OUT)
if PER_QUERY:
    with atomic_path(PER_QUERY) as tmp:
        per_query.to_csv(tmp, sep="\t", index=False)
    log.info("wrote per-query scores to %s (%d rows)", PER_QUERY, len(per_query))
