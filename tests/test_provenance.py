"""Provenance: every run file and index records what made it, and is reused only when that
still holds; the same experiment gives the same bytes."""
import gzip
import json
import shutil

import pandas as pd
import pytest

from conftest import FR_DEV_QUERIES, FR_PASSAGES, QRELS_SMALL, REPO, flores_source, run_script
from crossvariety import provenance, runs
from test_scripts import read_table

FLORES = REPO / "configs" / "flores_bm25.toml"


def value(table, row, measure):
    return float(table[row][measure].rstrip("†"))


def test_a_deeper_request_recomputes_a_shallower_run(tmp_path):
    """The issue's first case: 10-deep runs, then the default 1000: R@1000 is the true one
    (0.8735 for Catalan over French FLORES), not R@10 of the reused runs (0.7757); a shallower
    request is then served by the deeper runs, truncated."""
    flores_source()
    shallow = run_script("run_mmarco.py", "--config", FLORES, "--pairs", "ca-fr",
                         "--num-results", "10", cwd=tmp_path)
    assert value(read_table(shallow.stdout), "ca-fr q-ca", "R@1000") == 0.7757
    deep = run_script("run_mmarco.py", "--config", FLORES, "--pairs", "ca-fr", cwd=tmp_path)
    assert value(read_table(deep.stdout), "ca-fr q-ca", "R@1000") == 0.8735
    assert "flores200-devtest-fr.bm25.q-ca.retrieve.res.gz: made 10 deep, 1000 asked" \
        in deep.stderr
    again = run_script("run_mmarco.py", "--config", FLORES, "--pairs", "ca-fr",
                       "--num-results", "10", cwd=tmp_path)
    assert "reusing" in again.stderr and "recomputing" not in again.stderr
    run = runs.read_run(tmp_path / "runs" / "flores" /
                        "flores200-devtest-fr.bm25.q-ca.retrieve.res.gz")
    assert run.groupby("qid").size().max() > 10  # the file keeps its depth
    # make_tables.py says when a run is shallower than a measure's cutoff
    for path in (tmp_path / "runs" / "flores").glob("*.res.gz.json"):
        record = json.loads(path.read_text())
        path.write_text(json.dumps(dict(record, depth=10)))
    proc = run_script("make_tables.py", "--config", FLORES, "--no-figures", cwd=tmp_path)
    assert "made 10 deep, so R@1000 cannot reach its cutoff" in proc.stderr


def write_folder(folder, passages, docno_prefix=""):
    """A dataset folder: documents, the toy French dev/small queries and their qrels."""
    folder.mkdir(parents=True)
    with gzip.open(folder / "docs.tsv.gz", "wt", encoding="utf-8") as f:
        f.writelines(f"{docno_prefix}{d}\t{t}\n" for d, t in passages.items())
    judged = dict(QRELS_SMALL)
    (folder / "queries.tsv").write_text(
        "".join(f"{q}\t{t}\n" for q, t in FR_DEV_QUERIES.items() if q in judged),
        encoding="utf-8")
    (folder / "qrels.txt").write_text("".join(f"{q} 0 {d} 1\n" for q, d in QRELS_SMALL))


def test_another_collection_in_a_folder_of_the_same_name(tmp_path, workdir):
    """The issue's second case: loc/ then other2/loc/ (same name, other documents) in one
    experiment folder: the second gets its own numbers (not the first's reused runs), the BM25
    index is rebuilt, and each keeps its own gap table."""
    variety = workdir / "data" / "translations" / "mmarco-v2-fr-dev-small.ca.tsv"
    write_folder(workdir / "loc", FR_PASSAGES)
    # the same passages under rotated docnos: the judged passage is another one
    texts = list(FR_PASSAGES.values())
    rotated = dict(zip(FR_PASSAGES, texts[3:] + texts[:3]))
    write_folder(workdir / "other2" / "loc", rotated)

    def experiment(folder, cwd):
        proc = run_script("run_mmarco.py", "--pairs", "ca-fr", "--collection", folder,
                          "--topics", folder, "--variety-queries", variety, "--evaluate", cwd=cwd)
        return read_table(proc.stdout), proc.stderr

    first, _ = experiment("loc", workdir)
    second, log = experiment("other2/loc", workdir)
    fresh_dir = tmp_path / "fresh"
    shutil.copytree(workdir / "other2", fresh_dir / "other2")
    true, _ = experiment("other2/loc", fresh_dir)
    for row in ("ca-fr q-fr", "ca-fr q-ca"):
        assert second[row] == true[row]
    assert value(first, "ca-fr q-fr", "MRR@10") == 1.0
    assert value(second, "ca-fr q-fr", "MRR@10") < 0.5
    assert "recomputing loc.bm25.q-fr.retrieve.res.gz: changed collection: docs.tsv.gz" in log
    assert "rebuilding the BM25 index" in log
    tables = sorted(p.name for p in (workdir / "runs").glob("loc-*.bm25.ca-fr.gap.md"))
    assert len(tables) == 2, tables  # one per collection: neither overwrote the other


@pytest.fixture
def new_weights():
    """Overwrite the weights of an XLM-R folder with another random draw, in place."""
    def write(folder, seed):
        import torch
        from transformers import XLMRobertaModel
        model = XLMRobertaModel.from_pretrained(folder, add_pooling_layer=False)
        torch.manual_seed(seed)
        fresh = XLMRobertaModel(model.config, add_pooling_layer=False)
        fresh.save_pretrained(folder)
    return write


def test_new_weights_under_the_same_model_path(tmp_path, workdir, tiny_xlmr, new_weights):
    """The issue's third case: other weights saved where the model was. The runs are not
    reused, the dense index of the old weights is refused (one line: the difference and the
    fix), and --overwrite rebuilds it: the runs are those of a fresh experiment."""
    from crossvariety.families import bgem3, indexes
    from crossvariety.data.datasets import Dataset
    from crossvariety.errors import UserError
    args = ["--pairs", "ca-fr", "--model", "models/tiny", "--max-length", "128"]
    names = [f"mmarco-v2-fr-dev-small.tiny.q-{q}.retrieve.res.gz" for q in ("fr", "ca")]
    fresh = tmp_path / "fresh"  # the true runs: the new weights from the start
    shutil.copytree(workdir / "data", fresh / "data")
    shutil.copytree(tiny_xlmr, fresh / "models" / "tiny")
    new_weights(fresh / "models" / "tiny", seed=1)
    run_script("run_mmarco.py", *args, cwd=fresh)

    model = workdir / "models" / "tiny"
    shutil.copytree(tiny_xlmr, model)
    run_script("run_mmarco.py", *args, cwd=workdir)
    old = {name: (workdir / "runs" / name).read_bytes() for name in names}
    new_weights(model, seed=1)
    refused = run_script("run_mmarco.py", *args, cwd=workdir, check=False)
    assert refused.returncode == 1
    message = refused.stderr.strip().splitlines()[-1]
    assert message.startswith("run_mmarco.py: indexes/tiny/mmarco-v2-fr was built from other "
                              "inputs (model_id: sha256:") and "pass --overwrite" in message
    assert "recomputing mmarco-v2-fr-dev-small.tiny.q-fr.retrieve.res.gz: changed model" \
        in refused.stderr
    run_script("run_mmarco.py", *args, "--overwrite", cwd=workdir)
    for name in names:
        made = (workdir / "runs" / name).read_bytes()
        assert made == (fresh / "runs" / name).read_bytes(), name
        assert made != old[name], name
    # index_bgem3.py's check: the same index at another document length is refused
    index = workdir / "indexes" / "tiny" / "mmarco-v2-fr"
    collection = Dataset("irds:mmarco/v2/fr")
    assert indexes.check_index(index, bgem3.index_built, bgem3.index_inputs(model, collection, 128))
    with pytest.raises(UserError, match=r"max_length: 128 -> 1024\): --overwrite rebuilds it"):
        indexes.check_index(index, bgem3.index_built, bgem3.index_inputs(model, collection, 1024))


def test_the_flores_main_job_twice_gives_the_same_bytes(tmp_path, flores_main_job):
    """Two fresh runs of the README's main job: every run file and table byte-identical."""
    _, _, first = flores_main_job
    run_script("run_mmarco.py", "--config", FLORES, cwd=tmp_path)
    folder = tmp_path / "runs" / "flores"
    second = {p.name: p.read_bytes() for p in folder.iterdir()
              if p.name.endswith((".res.gz", ".md"))}
    assert len(first) == 14 and first == second


# ----------------------------------------------------------------------------- the parts

def frame(rows):
    return pd.DataFrame(rows, columns=["qid", "docno", "rank", "score"])


def test_run_records_legacy_runs_edits_and_order(tmp_path, caplog):
    path = tmp_path / "x.res.gz"
    recipe = {"model": "m", "queries": "2 queries sha256:00"}
    made = frame([("2", "b", 0, 2.0), ("10", "a", 0, 1.0), ("2", "a", 1, 1.0)])
    calls = []

    def make():
        calls.append(1)
        return made

    run = runs.cached_run(path, make, recipe=lambda: recipe, depth=2)
    assert len(calls) == 1
    # rows by qid as strings, then rank; a gzip header with neither file name nor time
    lines = gzip.open(path, "rt").read().splitlines()
    assert [line.split()[:3] for line in lines] == [["10", "Q0", "a"], ["2", "Q0", "b"],
                                                    ["2", "Q0", "a"]]
    header = path.read_bytes()[:10]
    assert header[3] == 0 and header[4:8] == bytes(4)  # no FNAME field, MTIME 0
    assert list(runs.cached_run(path, make, recipe=lambda: recipe, depth=1).docno) == ["a", "b"]
    assert len(calls) == 1  # reused, truncated
    runs.cached_run(path, make, recipe=lambda: dict(recipe, model="n"), depth=2)
    assert len(calls) == 2  # another model
    runs.cached_run(path, make, recipe=lambda: recipe, depth=2)
    assert len(calls) == 3  # and back
    runs.cached_run(path, make, recipe=lambda: recipe, depth=3)
    assert len(calls) == 4  # 3 deep asked of a 2-deep run
    runs.cached_run(path, make, recipe=lambda: recipe, depth=3)
    assert len(calls) == 4
    runs.write_run(made.head(1), path)  # the file changed under its record
    runs.cached_run(path, make, recipe=lambda: recipe, depth=3)
    assert len(calls) == 5
    provenance.record_path(path).unlink()  # a run of an older version: reused, with a warning
    with caplog.at_level("WARNING"):
        assert len(runs.cached_run(path, make, recipe=lambda: recipe, depth=3)) == 3
    assert len(calls) == 5 and "has no record of what made it" in caplog.text
    assert run.equals(made)


def test_file_hashes_are_kept_while_the_file_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv(provenance.HASH_CACHE_ENV, str(tmp_path / "hashes.json"))
    provenance._hash_cache.cache_clear()
    data = tmp_path / "docs.tsv"
    data.write_text("d1\tone\n")
    opened = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        if str(path) == str(data):
            opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    first = provenance.file_sha256(data)
    provenance._hash_cache.cache_clear()  # another process: reads the cache file
    assert provenance.file_sha256(data) == first and len(opened) == 1
    data.write_text("d1\ttwo\n")
    assert provenance.file_sha256(data) != first and len(opened) == 2
    provenance._hash_cache.cache_clear()


def test_identities(tmp_path, tiny_xlmr):
    from crossvariety.data.datasets import Dataset
    queries = pd.DataFrame({"qid": ["1", "2"], "query": ["a", "b"]})
    assert provenance.queries_id(queries) == provenance.queries_id(queries.iloc[::-1])
    assert provenance.queries_id(queries) != provenance.queries_id(queries.assign(query="a"))
    write_folder(tmp_path / "a" / "loc", FR_PASSAGES)
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # a copy: the same identity
    ids = [provenance.collection_id(Dataset(tmp_path / d / "loc")) for d in ("a", "b")]
    assert ids[0] == ids[1] and ids[0].startswith("docs.tsv.gz sha256:")
    model = tmp_path / "model"
    shutil.copytree(tiny_xlmr, model)
    before = provenance.model_id(model)
    assert before == provenance.model_id(tiny_xlmr)
    (model / "trainer.pt").write_bytes(b"optimizer state")  # not part of what it computes
    assert provenance.model_id(model) == before
    (model / "tokenizer_config.json").write_text("{}")
    assert provenance.model_id(model) != before
    # a re-ranker's input: the pairs it re-ranks (each query's top k), not the whole run
    run = frame([("1", "d1", 0, 3.0), ("1", "d2", 1, 2.0), ("1", "d3", 2, 1.0)])
    collection = Dataset(tmp_path / "a" / "loc")
    top2 = provenance.rerank_recipe(model, run, queries, collection, 2, "fp32")
    assert top2 == provenance.rerank_recipe(model, run.head(2), queries, collection, 2, "fp32")
    assert top2 != provenance.rerank_recipe(model, run, queries, collection, 3, "fp32")
    assert top2["queries"] == provenance.queries_id(queries.head(1))  # the queries re-ranked
    assert provenance.differences({"model": "x@abc"}, {"model": "x@uncached"}) == []
    assert provenance.differences({"a": {"b": 1}}, {"a": {"b": 2}}) == ["a.b: 1 -> 2"]


def test_make_tables_path_flags_override_the_configs_paths(tmp_path, irds_home):
    """make_tables.py --config C --runs-dir X reads and writes X, as run_mmarco.py --config C
    --runs-dir X would have written there (not C's runs_dir)."""
    from test_paper import write_runs
    config = tmp_path / "exp.toml"
    config.write_text('[paths]\nruns_dir = "runs/in-config"\n'
                      '[run_mmarco]\npairs = ["ca-fr"]\nevaluate = true\n')
    elsewhere = tmp_path / "runs" / "elsewhere"
    write_runs(elsewhere, {("bm25", "fr"): [1, 3, 1, 1], ("bm25", "ca"): [2, None, None, 1]})
    proc = run_script("make_tables.py", "--config", config, "--runs-dir", elsewhere,
                      "--no-figures", cwd=tmp_path)
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.startswith("| ca-fr")]
    assert [(r[3].strip(), r[4].strip()) for r in rows] == [("fr", "0.8333"), ("ca", "0.3750")]
    assert (elsewhere / "exp.table.md").is_file() and not (tmp_path / "runs" / "in-config").exists()
