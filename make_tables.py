"""The paper's tables and figures from the run files, with the published numbers beside ours.

Reads the run files that run_mmarco.py and run_neuclir.py wrote (it never computes a run) and
prints each experiment's table: our value († = differs from its baseline row: the high-resource
queries, or the original model; paired t-test, Bonferroni within each pair and system), the
published value where the paper's figures give one, and the difference (! = more than
--tolerance). Tables are written as Markdown, CSV and LaTeX, figures as PNG and PDF.

Which runs: the experiment configs say which run files their scripts write and where.
  - with no --config: the paper, from every config in configs/: rq1 (the gap of each system and
    pair), rq2 (original vs fine-tuned on the trained pair), rq3 (the fine-tuned models
    zero-shot on the other pairs), neumarco and neuclir (across language families), and the
    follow-up's (Lost in Transliteration, SIGIR 2025) translit-mmarco (native vs romanised
    queries, per language) and translit-neuclir (TREC 2022 + 2023 topics pooled); tables and
    figures go to {runs_dir}/tables/;
  - with --config FILE of a run_mmarco.py or run_neuclir.py experiment (the FLORES main job, your
    own pair): that experiment's table and gap chart, written beside its runs.
Path flags (--runs-dir, --data-dir, --index-dir, ...) override the [paths] of every config read,
as they do for the run scripts: `--config C --runs-dir X` reads the runs that
`run_mmarco.py --config C --runs-dir X` wrote, and writes its tables there.
--plan lists every run file the tables need, which exist, and for each missing one the command
that makes it, with an estimate of its GPU time on one H200 at the measured throughput.

Examples:
  python make_tables.py --config configs/flores_bm25.toml     # after the main job: table + chart
  python make_tables.py --plan                                 # the paper: what is there, what not
  python make_tables.py                                        # the paper's tables and figures
  python make_tables.py --experiments rq2 rq3 --rename bge-m3-lt-cafr=bge-m3-ft-cafr \\
      --runs-dirs runs/train-cafr-bgem3                        # your own fine-tuned model's runs
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
CONFIGS = []  # experiment configs (run_mmarco.py / run_neuclir.py) whose runs the tables read;
              # empty = --config's own experiment if it has one, else every config in configs/
EXPERIMENTS = []  # the paper's experiments to make: rq1 rq2 rq3 neumarco neuclir, and the
                  # follow-up's translit-mmarco translit-neuclir (one table per language); empty
                  # = all
RUNS_DIRS = []  # more folders to look for run files in, besides each config's runs_dir
RENAME = []  # PAPER=OURS model labels: read the runs of our model in place of the paper's, e.g.
             # bge-m3-lt-cafr=bge-m3-ft-cafr (a model trained with finetune_bgem3.py)
MEASURES = []  # ir_measures measures; empty = MRR@10 R@1000 (mMARCO, FLORES), or nDCG@20 R@1000 for
               # neuCLIR
TOLERANCE = 0.01  # a difference from the published value above this is flagged with !
ALPHA = 0.05  # significance level; a value with corrected p < alpha is marked †
CORRECTION = "bonferroni"  # correction of the paired t-tests within each pair and system:
                           # bonferroni holm holm-sidak fdr_bh none
FORMAT = "markdown"  # format of the printed tables: markdown, csv or latex (all three are written)
OUT_DIR = ""  # folder for the tables and figures; empty = {runs_dir}/tables, or the config's
              # runs_dir for one experiment's config
FIGURES = True  # write the figures (PNG and PDF)
PLAN = False  # print the run files each table needs, which exist, and the commands (with GPU time
              # estimates) that make the missing ones; compute nothing
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import logging
import time
from pathlib import Path

from crossvariety.experiments import ENCODE_PASSAGES_PER_S, RERANK_PAIRS_PER_S, config_outputs, \
    gpu_seconds
from crossvariety.report import evaluation, paper
from crossvariety.report.cells import run_names
from crossvariety.report.followup import is_script_table
from crossvariety.errors import UsageError, UserError
from crossvariety.runs import write_text

log = logging.getLogger("make_tables")
if FORMAT not in ("markdown", "csv", "latex"):
    raise UsageError(f"unknown format {FORMAT!r}; choose markdown, csv or latex")
if any("=" not in r for r in RENAME):
    raise UsageError(f"--rename takes PAPER=OURS model labels, got {RENAME}")
rename = dict(r.split("=", 1) for r in RENAME)
evaluation.parse_measures(MEASURES)
evaluation.correct([], CORRECTION)  # an unknown correction fails here
start = time.time()

# 1. the configs: one experiment's (its own table), or the paper's (every config in configs/)
own = paths["config"] and not CONFIGS and \
    {"run_mmarco", "run_neuclir"} & set(settings.config_tables(paths["config"]))
configs = CONFIGS or ([str(paths["config"])] if own else
                      sorted(str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd())
                             else str(p) for p in (settings.REPO_ROOT / "configs").glob("*.toml")))
# each config's run script says what it runs with (--show-config): all asked at once
settings.experiment_settings_many((config, script) for config in configs
                                  for script in ("run_mmarco", "run_neuclir")
                                  if script in settings.config_tables(config))
where, outputs = {}, []  # run file name -> the places the configs write it
for config in configs:
    for output in config_outputs(config, paths["flags"]):  # --runs-dir etc. win
        outputs.append(output)
        where.setdefault(output.path.name, []).append(output)


def locate(name):
    """The run file of this name, where a config writes it or in --runs-dirs; None if absent."""
    candidates = [o.path for o in where.get(name, [])] + [Path(d) / name for d in RUNS_DIRS]
    return next((path for path in candidates if path.is_file()), None)


# 2. the experiments: lists of cells (run files, their topics and baselines)
if own:  # run_mmarco.py's gap table; run_neuclir.py's tables, by the measures of their topics
    cells = paper.config_cells(outputs)
    kinds = {kind: None for kind in (paper.kind(c) for c in cells)}
    experiments = {Path(paths["config"]).stem + (f"-{kind}" if len(kinds) > 1 else ""):
                   paper.subset(cells, lambda c, kind=kind: paper.kind(c) == kind)
                   for kind in kinds}
    out_dir = Path(OUT_DIR) if OUT_DIR else outputs[0].path.parent
else:
    experiments = paper.experiments(EXPERIMENTS or ["rq1", "rq2", "rq3", "neumarco", "neuclir",
                                                     "translit-mmarco", "translit-neuclir"],
                                    rename)
    out_dir = Path(OUT_DIR) if OUT_DIR else paths["runs_dir"] / "tables"

# 3. --plan: what each table needs, what is there, and what makes the rest
if PLAN:
    missing = {}
    for name, cells in experiments.items():
        runs = list(dict.fromkeys(run for cell in cells for run in run_names(cell)))
        absent = [run for run in runs if locate(run) is None]
        print(f"{name}: {len(runs)} run files, {len(runs) - len(absent)} present, "
              f"{len(absent)} missing")
        for run in absent:
            makers = where.get(run)
            missing.setdefault(makers[0].command if makers else None, {})[run] = makers
    encoded, total = set(), 0.0  # an index shared by several commands counts once in the total
    for command, runs in missing.items():
        if command is None:
            continue
        work = [w for makers in runs.values() for w in makers[0].work]
        seconds = gpu_seconds(work)  # as if run alone: with the indexes it needs
        total += gpu_seconds(work, encoded)
        estimate = f"GPU ~{seconds / 3600:.1f} h" if seconds else "no GPU"
        print(f"\n{command}   # {len(runs)} missing runs, {estimate}")
        for run, makers in runs.items():
            print(f"    {makers[0].path}")
    if None in missing:
        print("\nNo config in configs/ makes these:")
        for run in missing[None]:
            print(f"    {run}")
    print(f"\nGPU time of the missing runs: ~{total / 3600:.1f} h on one H200 (encoding "
          f"{ENCODE_PASSAGES_PER_S:,} passages/s, re-ranking {RERANK_PAIRS_PER_S:,} "
          "pairs/s; ColBERT-XM's encoding, not measured yet, at BGE-M3's rate; each command's "
          "estimate includes the dense indexes it builds, the total "
          "counts a shared index once, built indexes are not counted); BM25 needs CPU only.")
    raise SystemExit(0)

# 4. our values, the published ones beside them, the tables and the figures
from crossvariety.report import figures  # noqa: E402 (matplotlib: only when there is a figure to draw)



def benchmark(cells):
    """What the cells' topics are, in words, for a figure's title."""
    names = []
    for cell in cells:
        topics = cell.topics
        names.append("FLORES-200 devtest" if "flores200-devtest" in topics else
                     "mMARCO dev/small" if "marco" in topics and "neumarco" not in topics else
                     "neuMARCO" if "neumarco" in topics else "neuCLIR" if "neuclir" in topics
                     else Path(topics.rstrip("/")).name)
    return ", ".join(dict.fromkeys(names))


def significance_note(cells):
    """The sentence under a table: what † and p are tested against, corrected over which rows."""
    if any(c.role in ("variety", "translated") for c in cells):
        return evaluation.significance_note(
            "the high-resource queries of the same pair and model" +
            ("; for fine-tuned models, the original model on the same queries"
             if any(c.role == "fine-tuned" for c in cells) else ""),
            "the rows tested against the same baseline", CORRECTION, ALPHA)
    return evaluation.significance_note("the original (first) model on the same queries",
                                        "the other models tested against it", CORRECTION, ALPHA)


problems = []
for name, cells in experiments.items():
    measures = MEASURES or evaluation.default_measures(cells[0].topics)
    problems += paper.evaluate_cells(cells, locate, lambda topics: measures, CORRECTION)
if not any(cell.values for cells in experiments.values() for cell in cells):
    makers = list(dict.fromkeys(o.command for o in outputs))
    raise UserError(f"no run file of {', '.join(experiments)} exists yet (looked in "
                    f"{', '.join(sorted({str(o.path.parent) for o in outputs} | set(RUNS_DIRS)))})"
                    + (f"; make them first: {makers[0]}" if own and len(makers) == 1 else
                       "; make_tables.py --plan lists the commands that make them"))
evaluation.log_problems(problems, log)

for name, cells in experiments.items():
    measures = MEASURES or evaluation.default_measures(cells[0].topics)
    frame = paper.table(cells, measures, TOLERANCE)
    absent = sum(1 for cell in cells if not cell.values)
    note = significance_note(cells)
    print(f"## {name}" + (f" ({absent} of {len(cells)} rows have no run yet: make_tables.py "
                          "--plan)" if absent else ""))
    render = paper.render_by_script if is_script_table(cells) else paper.render
    print(render(frame, measures, FORMAT, ALPHA) + ("\n" + note if FORMAT == "markdown"
                                                    else ""))
    written = []
    for fmt, suffix in (("markdown", ".md"), ("csv", ".csv"), ("latex", ".tex")):
        path = out_dir / f"{name}.table{suffix}"
        write_text(path, render(frame, measures, fmt, ALPHA) +
                   ("\n" + note + "\n" if fmt == "markdown" else ""))
        written.append(path)
    if FIGURES and any(cell.values for cell in cells):
        systems = ", ".join(dict.fromkeys(c.labels.get("model", c.model) for c in cells))
        for measure in measures:
            if is_script_table(cells):
                title = f"{benchmark(cells)}: {measure}, native vs romanised queries ({name})"
                written += figures.save(figures.script_chart(cells, measure, title, ALPHA),
                                        out_dir / f"{name}.{measure}")
            if any(c.role in ("highres", "variety") for c in cells):
                title = f"{benchmark(cells)}: {measure} of {systems}, high-resource vs " \
                        "variety queries"
                written += figures.save(figures.gap_chart(cells, measure, title, ALPHA),
                                        out_dir / f"{name}.{measure}")
            for trained in dict.fromkeys(c.labels.get("trained on") for c in cells):
                chosen = paper.subset(cells, lambda c: c.labels.get("trained on") == trained)
                if trained and any(c.values for c in chosen):
                    written += figures.save(figures.transfer_chart(
                        chosen, measure, f"{benchmark(chosen)}: {measure}, original vs "
                        f"fine-tuned on {trained} ({name})"),
                        out_dir / f"{name}-{trained}.{measure}")
    log.info("wrote %s", ", ".join(str(p) for p in written))
log.info("made %d table(s) in %.1fs", len(experiments), time.time() - start)
