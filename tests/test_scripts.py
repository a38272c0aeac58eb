"""End-to-end runs of the stage scripts, as a user runs them, on fixtures under the real ids."""
import gzip
import json

import numpy as np
import pytest

from conftest import CA_DEV_QUERIES, FR_DEV_QUERIES, FR_PASSAGES, QRELS_SMALL, REPO, \
    assert_ranked, assert_row, hand_bm25, read_table, reference_means, run_script
from crossvariety import settings
from crossvariety.runs import read_run


@pytest.mark.parametrize("script, options", [
    ("index_bm25.py", ["--dataset", "--lang", "--cjk", "--index", "--workers", "--overwrite",
                       "--config"]),
    ("run_mmarco.py", ["--benchmark", "--pairs", "--model", "--collection", "--topics",
                       "--variety-queries", "--cjk", "--num-results", "--evaluate", "--measures",
                       "--correction", "--dtype", "--overwrite", "--runs-dir", "[pairs.NAME]"]),
    ("evaluate.py", ["--qrels", "--names", "--measures", "--baseline", "--correction", "--format",
                     "--per-query", "--out", "--alpha"]),
    ("index_bgem3.py", ["--dataset", "--model", "--max-length", "--shard", "--merge-only",
                        "--dtype"]),
    ("index_colbertxm.py", ["--dataset", "--model", "--language", "--doc-lang-from-config",
                            "--nbits", "--shard", "--merge-only", "--dtype"]),
    ("finetune_colbertxm.py", ["--train", "--model", "--language", "--learning-rate",
                               "--adam-eps", "--max-steps", "--warmup-steps",
                               "--freeze-adapters", "--stop-after"]),
    ("run_neuclir.py", ["--datasets", "--models", "--query-field", "--rerank", "--dtype"]),
    ("rerank_mt5.py", ["--run", "--dataset", "--queries", "--model", "--top-k", "--dtype",
                      "--out"]),
    ("translate_queries.py", ["--pair", "--queries", "--src", "--tgt", "--engine", "--model",
                              "--out"]),
    ("mine_negatives.py", ["--pair", "--source", "--ce-margin", "--run", "--rounds", "--seed"]),
    ("finetune_bgem3.py", ["--train", "--learning-rate", "--group-size", "--temperature",
                           "--max-grad-norm", "--compile", "--stop-after"]),
    ("finetune_mt5.py", ["--train", "--learning-rate", "--batch-size", "--grad-accum",
                         "--compile", "--save-every", "--stop-after", "--wandb"]),
    ("make_tables.py", ["--configs", "--experiments", "--runs-dirs", "--rename", "--tolerance",
                        "--plan", "--format", "--out-dir", "--figures"]),
])
def test_help_explains_every_option(tmp_path, script, options):
    # a fresh interpreter: every script starts once as a user starts it (the other tests run
    # most scripts in forks of a pre-imported server, conftest.Launcher)
    out = run_script(script, "--help", cwd=tmp_path, fork=False).stdout
    assert "Example" in out
    for option in options:
        assert option in out
    if script == "evaluate.py":  # it reads files by path only: no path flag that would do nothing
        assert "-dir" not in out and "paths of the experiment" not in out
    # every setting the script has (--show-config lists them) is a flag explained in --help,
    # with its default unless that is empty (then the explanation says what empty means)
    shown = json.loads(run_script(script, "--show-config", cwd=tmp_path).stdout)
    assert shown["script"] == script[:-len(".py")]
    blocks = help_blocks(out)
    defaults = {name: value for name, value in shown["settings"].items()}
    if script != "evaluate.py":
        defaults |= {key: value or "" for key, value in settings.PATHS.items()}
    for name, default in defaults.items():
        if script == "evaluate.py" and name == "runs":  # the positional argument
            assert "RUN" in out and "TREC run files to evaluate" in out
            continue
        flag = "--" + name.replace("_", "-")
        assert flag in blocks, f"{script}: {flag} missing from --help"
        text = blocks[flag]
        assert len(text.split()) >= 3, f"{script}: {flag} is not explained: {text!r}"
        if isinstance(default, bool):
            shown_default = str(default)
        elif isinstance(default, list):
            shown_default = " ".join(default)
        else:
            shown_default = repr(default) if name not in settings.PATHS else default
        if default not in ("", []):
            assert "".join(f"(default: {shown_default})".split()) in "".join(text.split()), \
                f"{script}: {flag}: no default {shown_default!r} in {text!r}"
        else:
            assert "default:" not in text


def help_blocks(out):
    """{flag: its help text} of an argparse --help (each option's lines, joined)."""
    blocks, current = {}, None
    for line in out.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            flags = [f.split()[0] for f in line.split("  ")[1].split(", ")]
            current = [line.strip()]
            for flag in flags:
                blocks[flag] = current
        elif current is not None and line.startswith("   "):
            current.append(line.strip())
        else:
            current = None
    return {flag: " ".join(lines) for flag, lines in blocks.items()}


def hand_run(queries, lang="fr"):
    """BM25 computed by hand (conftest.hand_bm25) over the toy French passages, every text
    analysed as the index analyses it; {qid: {docno: score}}."""
    from crossvariety.families.analysis import get_analyzer
    analyzer = get_analyzer(lang)

    def terms(text):
        return [t for t, n in analyzer.counts(text).items() for _ in range(n)]
    docs = {d: terms(t) for d, t in FR_PASSAGES.items()}
    return {q: hand_bm25(terms(text), docs) for q, text in queries.items()}


def test_run_mmarco_bm25_end_to_end(workdir):
    """The runs hold BM25 as computed by hand, the table its means; a re-run reuses them;
    evaluate.py prints the same numbers."""
    proc = run_script("run_mmarco.py", "--pair", "ca-fr", "--model", "bm25", "--evaluate",
                      cwd=workdir)
    runs = workdir / "runs"
    fr_run = runs / "mmarco-v2-fr-dev-small.bm25.q-fr.retrieve.res.gz"
    ca_run = runs / "mmarco-v2-fr-dev-small.bm25.q-ca.retrieve.res.gz"
    assert (workdir / "indexes" / "bm25" / "mmarco-v2-fr" / "crossvariety.json").is_file()
    assert {line.split()[1] + " " + line.split()[5] for line in gzip.open(fr_run, "rt")} == \
        {"Q0 mmarco-v2-fr-dev-small.bm25.q-fr.retrieve"}
    # stdout holds the table and the sentence under it alone (PISA's C++ progress goes to
    # stderr with the logs)
    lines = [line for line in proc.stdout.splitlines() if line]
    assert all(line.startswith("|") for line in lines[:-1])
    assert lines[-1].startswith("† = differs from the pair's high-resource queries")
    table = read_table(proc.stdout)
    judged = dict(QRELS_SMALL)
    expected = {}
    for queries, run_file, texts in (("fr", fr_run, FR_DEV_QUERIES),
                                     ("ca", ca_run, CA_DEV_QUERIES)):
        expected[queries] = hand_run({q: texts[q] for q in judged})
        run = read_run(run_file)
        assert set(run.qid) == {q for q, scores in expected[queries].items() if scores}
        for qid, scores in expected[queries].items():
            got = run[run.qid == qid].sort_values("rank")
            assert_ranked(got.docno, scores, 1e-5 * max(scores.values(), default=0))
            np.testing.assert_allclose(got.score, sorted(scores.values(), reverse=True), rtol=1e-5)
        assert_row(table[f"ca-fr q-{queries}"], reference_means(expected[queries], QRELS_SMALL))
    # French queries find their passage first; 105 is a dev query outside dev/small
    assert table["ca-fr q-fr"]["MRR@10"] == "1.0000" and "MRR@10 p" in table["ca-fr q-ca"]
    assert (runs / "mmarco.bm25.ca-fr.gap.md").read_text() in proc.stdout

    # A re-run reuses the run files; --overwrite recomputes them.
    mtime = ca_run.stat().st_mtime_ns
    proc = run_script("run_mmarco.py", "--pairs", "ca-fr", cwd=workdir)
    assert "reusing" in proc.stderr and ca_run.stat().st_mtime_ns == mtime
    run_script("run_mmarco.py", "--pairs", "ca-fr", "--overwrite", cwd=workdir)
    assert ca_run.stat().st_mtime_ns != mtime

    # evaluate.py on the two runs: CSV with the same means, per-query scores; --out writes
    # the table too
    per_query, out = workdir / "pq.tsv", workdir / "table.csv"
    proc = run_script("evaluate.py", fr_run, ca_run, "--qrels", "irds:mmarco/v2/fr/dev/small",
                      "--names", "fr", "ca", "--format", "csv", "--per-query", per_query,
                      "--out", out, cwd=workdir)
    lines = proc.stdout.splitlines()
    assert lines[0] == "run,queries,MRR@10,R@1000,MRR@10 p,R@1000 p"
    for line, queries in zip(lines[1:], ("fr", "ca")):
        name, count, mrr, recall = line.split(",")[:4]
        assert (name, count) == (queries, "4")
        means = reference_means(expected[queries], QRELS_SMALL)
        assert float(mrr) == pytest.approx(means["MRR@10"])
        assert float(recall) == pytest.approx(means["R@1000"])
    assert out.read_text() == proc.stdout
    rows = [line.split("\t") for line in per_query.read_text().splitlines()]
    assert rows[0] == ["run", "qid", "measure", "value"] and len(rows) == 1 + 2 * 4 * 2


def test_evaluate_without_a_baseline_and_with_duplicate_names(workdir):
    """--baseline none: means only, no p-value columns, judged queries missing from the runs
    reported; two runs under one name, or a name too many: an error."""
    run = workdir / "r.res"
    run.write_text("101 Q0 2 0 2.0 x\n101 Q0 5 1 1.0 x\n102 Q0 3 0 1.0 x\n102 Q0 1 1 0.5 x\n")
    proc = run_script("evaluate.py", run, run, "--qrels", "irds:mmarco/v2/fr/dev/small",
                      "--names", "a", "b", "--baseline", "none", "--measures", "MRR@10",
                      cwd=workdir)
    table = read_table(proc.stdout)
    # 101: rank 1, 102: rank 2, 103 and 104 missing (0): (1 + 1/2) / 4
    assert table["a"]["MRR@10"] == table["b"]["MRR@10"] == "0.3750"
    assert not any(" p" in column for column in table["b"])
    assert "a: no results for 2 of 4 judged queries" in proc.stderr
    proc = run_script("evaluate.py", run, workdir / "sub" / "r.res", "--qrels",
                      "irds:mmarco/v2/fr/dev/small", cwd=workdir, check=False)
    assert proc.returncode == 2 and "two runs share a name; label them with --names" in proc.stderr
    proc = run_script("evaluate.py", run, "--qrels", "irds:mmarco/v2/fr/dev/small", "--names",
                      "a", "b", cwd=workdir, check=False)
    assert proc.returncode == 2 and "2 names for 1 runs" in proc.stderr


def test_variety_queries_that_lack_judged_qids_fail(workdir):
    """(Malformed query files, a missing released file: the user-error table,
    tests/test_user_errors.py.)"""
    partial = workdir / "partial.tsv"
    partial.write_text("101\tQui produeix la mel?\n")
    proc = run_script("run_mmarco.py", "--pairs", "ca-fr", "--variety-queries", partial,
                      cwd=workdir, check=False)
    assert proc.returncode == 1 and "lacks 3 of the 4 qids" in proc.stderr
    assert not (workdir / "runs").exists()


def test_index_bm25_end_to_end(workdir):
    proc = run_script("index_bm25.py", "--dataset", "irds:mmarco/v2/fr", cwd=workdir)
    assert "with fr analysis" in proc.stderr  # the language comes from ir_datasets
    index = workdir / "indexes" / "bm25" / "mmarco-v2-fr"
    assert (index / "crossvariety.json").is_file()
    proc = run_script("index_bm25.py", "--dataset", "irds:mmarco/v2/fr", cwd=workdir)
    assert "already built" in proc.stderr
    assert [p.name for p in index.parent.iterdir()] == ["mmarco-v2-fr"]  # no partial left


