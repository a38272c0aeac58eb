"""The family interface: which family a model is, and a new family added as one module plus one
registry line, run through run_mmarco.py and make_tables.py --plan untouched."""
import gzip
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import IRDS_HOME, REPO, flores_source, read_table, reference_means, assert_row
from crossvariety import experiments, rerank
from crossvariety.errors import UsageError
from crossvariety.families import bgem3, bm25, colbertxm, family_of, first_stage_names


def test_each_model_finds_its_family(tmp_path):
    assert family_of("bm25") is bm25
    assert family_of("bge-m3-lt-cafr") is bgem3
    assert family_of("colbert-xm-lt-afdt") is colbertxm
    colbert_folder, dense_folder = tmp_path / "colbert", tmp_path / "dense"
    for folder in (colbert_folder, dense_folder):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    (colbert_folder / "artifact.metadata").write_text("{}")
    assert family_of(str(colbert_folder)) is colbertxm
    assert family_of(str(dense_folder)) is bgem3
    assert family_of("someone/my-colbert-model") is colbertxm  # by its name, not cached
    assert family_of("someone/my-dense-model") is bgem3
    with pytest.raises(UsageError, match=r"mt5-lt-cafr is not a first-stage model; choose bm25, "
                                         r"colbert-xm, .*bge-m3"):
        family_of("mt5-lt-cafr")
    assert rerank.family_of("mt5-lt-cafr").NAME == "mt5"
    with pytest.raises(UsageError, match="bge-m3 is not a re-ranker; choose mt5, "):
        rerank.family_of("bge-m3")
    assert first_stage_names()[0] == "bm25" and "colbert-xm-lt-cafr" in first_stage_names()


def test_run_file_names_come_from_the_family():
    """The label of each family in file names, per pair settings (BM25's depends on the pair's
    analysis, ColBERT-XM's on where its documents' adapter came from)."""
    from crossvariety.data.pairs import PAIRS
    s = {"model": "bm25", "cjk": "unigrams+bigrams", "ngram": 0, "romanize": False}
    assert experiments.first_stage(experiments.pair_settings(s, PAIRS["ca-fr"])) == "bm25"
    assert experiments.first_stage(experiments.pair_settings(s, PAIRS["yue-zh"])) == "bm25-unibi"
    s = {"model": "bm25", "cjk": "bigrams", "ngram": 4, "romanize": True}
    assert experiments.first_stage(experiments.pair_settings(s, PAIRS["ca-fr"])) == \
        "bm25-uroman-char4"
    s = {"model": "colbert-xm", "doc_lang_from_config": True}
    assert experiments.first_stage(s) == "colbert-xm-doclang-config"
    assert experiments.stage("mt5-lt-afdt") == "rerank-mt5-lt-afdt"


def test_no_script_asks_which_family_a_model_is():
    """Family names are compared only in the families' own modules (and the model registry)."""
    asks = re.compile(r"""(==|!=)\s*["'](bm25|bge-m3|colbert-xm|mt5)["']|"""
                      r"""\.startswith\(\(?["'](bge-m3|colbert-xm|mt5)""")
    own = {"families", "rerank"}
    sources = [*REPO.glob("*.py"), *(p for p in (REPO / "crossvariety").rglob("*.py")
                                     if p.parent.name not in own and p.name != "models.py")]
    found = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for p in sources
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if asks.search(line)]
    assert not found, found


def repository_copy(folder):
    """The repository's files (tracked and new, not ignored) copied into ``folder``."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, folder / name)
    return folder


def test_a_new_family_is_one_module_and_one_registry_line(tmp_path):
    """A toy family (tests/toy_family.py: exact word matches) copied into a copy of the package
    with its name added to REGISTRY, nothing else changed: run_mmarco.py retrieves with it on
    FLORES and prints the gap, its run files named by its label, and make_tables.py --plan
    lists them."""
    flores_source()
    repo = repository_copy(tmp_path / "repo")
    shutil.copy(REPO / "tests" / "toy_family.py", repo / "crossvariety" / "families" / "exact.py")
    registry = repo / "crossvariety" / "families" / "__init__.py"
    text = registry.read_text()
    assert text.count('    "bgem3",\n]') == 1
    registry.write_text(text.replace('    "bgem3",\n]', '    "bgem3",\n    "exact",\n]'))
    config = tmp_path / "toy.toml"
    config.write_text('[paths]\nruns_dir = "runs/toy"\n\n[run_mmarco]\nbenchmark = "flores"\n'
                      'pairs = ["ca-fr"]\nmodel = "exact"\nevaluate = true\n')
    env = dict(os.environ, IR_DATASETS_HOME=str(IRDS_HOME), PYTHONPATH=str(repo))
    work = tmp_path / "work"
    work.mkdir()

    def run(script, *args):
        proc = subprocess.run([sys.executable, str(repo / script), *map(str, args)], cwd=work,
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc

    plan = run("make_tables.py", "--config", config, "--plan").stdout
    assert "toy: 2 run files, 0 present, 2 missing" in plan
    assert f"python run_mmarco.py --config {config}   # 2 missing runs, no GPU" in plan
    proc = run("run_mmarco.py", "--config", config)
    runs = sorted((work / "runs" / "toy").glob("*.res.gz"))
    assert [p.name for p in runs] == ["flores200-devtest-fr.exact.q-ca.retrieve.res.gz",
                                      "flores200-devtest-fr.exact.q-fr.retrieve.res.gz"]
    # the table's rows are ir_measures' means of the runs it wrote
    qrels_file = work / "data" / "flores200-devtest-fr" / "qrels.txt.gz"
    qrels = [(qid, docno, int(label)) for qid, _, docno, label in
             (line.split() for line in gzip.open(qrels_file, "rt"))]
    rows = read_table(proc.stdout)
    for path in runs:
        scores = {}
        for line in gzip.open(path, "rt"):
            qid, _, docno, _, score, _ = line.split()
            scores.setdefault(qid, {})[docno] = float(score)
        queries = path.name.split(".q-")[1].split(".")[0]
        assert_row(rows[f"ca-fr q-{queries}"], reference_means(scores, qrels))
    assert "toy: 2 run files, 2 present, 0 missing" in \
        run("make_tables.py", "--config", config, "--plan").stdout
