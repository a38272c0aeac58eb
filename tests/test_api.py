"""The package installed, and its PyTerrier API (issue 20, deliverable 5): ``pip install`` gives a
``crossvariety`` that imports from any folder without torch and holds its data files; the
README's "From Python" example runs from the installed copy and prints the main job's gap; each
class gives what the repository's own path gives (run_mmarco.py's BM25 run, BgeM3Encoder's
vectors, MonoT5ReRanker's scores, the PLAID search of colbert_retriever) and composes with
``>>``, ``%`` and ``pt.Experiment``."""
import os
import re
import subprocess
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest
import pyterrier as pt

from conftest import FR_DEV_QUERIES, FR_PASSAGES, REPO, read_table

README = REPO / "README.md"
PACKAGE_DATA = ["crossvariety/data/flores200-devtest/fra_Latn.devtest.gz",
                "crossvariety/data/flores200-devtest/metadata_devtest.tsv.gz",
                "crossvariety/data/flores200-devtest/SHA256SUMS",
                "crossvariety/families/stopwords/french.txt",
                "crossvariety/report/published/afdt-models-mmarco.csv"]


def readme_python_blocks():
    """The README's "From Python" code blocks: (the one marked tested, its printed output, the
    one that needs the hub)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    tested = re.search(r"<!-- tested: tests/test_api\.py[^>]*-->\n```python\n(.*?)```",
                       section, re.S)[1]
    printed = re.search(r"<!-- what it prints -->\n```\n(.*?)```", section, re.S)[1]
    neural = re.search(r"<!-- needs the hub -->\n```python\n(.*?)```", section, re.S)[1]
    return tested, printed, neural


def source_copy(folder):
    """The files of a clone (this checkout's tracked and new files), in ``folder``: pip builds
    in the source tree (build/, *.egg-info), which must not be the checkout the tests run in."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(source.read_bytes())
    return folder


def outside_env(**extra):
    """An environment with no path to the checkout and no FLORES copy but the package's."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLORES_DIR")}
    return dict(env, **extra)


PROBE = """
import sys, crossvariety
from pathlib import Path
heavy = sorted(m for m in ("torch", "transformers", "pyterrier", "pandas") if m in sys.modules)
print(Path(crossvariety.__file__).parent)
print(heavy)
print(crossvariety.__version__, " ".join(crossvariety.__all__))
from crossvariety import settings  # as the stage scripts do, and still no torch
print("torch" in sys.modules)
"""


def test_installed_package_imports_anywhere_and_runs_the_readme_example(tmp_path):
    source = source_copy(tmp_path / "src")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)], check=True,
                   capture_output=True)
    for name in PACKAGE_DATA:
        assert (target / name).is_file(), name
    elsewhere = tmp_path / "notebook"
    elsewhere.mkdir()
    env = outside_env(PYTHONPATH=str(target))
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    import crossvariety
    assert probe == [str(target / "crossvariety"), "[]",
                     f"0.1.0 {' '.join(crossvariety.__all__)}", "False"]

    tested, printed, _ = readme_python_blocks()
    (elsewhere / "example.py").write_text(tested)
    run = subprocess.run([sys.executable, "example.py"], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == printed  # the README shows what it prints
    assert "Traceback" not in run.stderr and len(run.stderr.splitlines()) <= 3, run.stderr
    # the data went where run_mmarco.py puts it, from the FLORES copy in the installed package
    assert (elsewhere / "data" / "flores200-devtest-fr" / "docs.tsv.gz").is_file()
    assert (elsewhere / "data" / "translations" / "flores200-devtest-fr.ca.tsv.gz").is_file()


def test_editable_install_in_a_throwaway_venv(tmp_path):
    """pip install -e in a new venv (the test venv's packages as its dependencies: nothing is
    downloaded): the copy's own files are imported, and an edit shows without reinstalling."""
    import site
    source = source_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True,
                             check=True).stdout.strip()
    (tmp_path / purelib / "test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "-e", str(source)], check=True, capture_output=True, cwd=tmp_path)
    (source / "crossvariety" / "probe_edit.py").write_text("EDITED = True\n")
    out = subprocess.run([python, "-c", "import crossvariety, crossvariety.probe_edit as p; "
                          "print(crossvariety.__file__, p.EDITED)"], cwd=tmp_path,
                         env=outside_env(), capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(source / "crossvariety" / "__init__.py"), "True"]


def test_pyproject_dependencies_are_requirements_txt():
    """requirements.txt (the CI's install source) = the package's dependencies + its test extra,
    with the same pins."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime, test = project["dependencies"], project["optional-dependencies"]["test"]
    lines = [line.split("#")[0].strip() for line in
             (REPO / "requirements.txt").read_text().splitlines()]
    assert sorted(filter(None, lines)) == sorted(runtime + test)
    assert "torch==2.13.0" in runtime and not set(runtime) & set(test)


def test_the_api_names_resolve_lazily():
    import crossvariety
    for name in crossvariety.__all__:
        assert getattr(crossvariety, name).__name__ == name
    with pytest.raises(AttributeError):
        crossvariety.NoSuchThing
    assert set(crossvariety.__all__) <= set(dir(crossvariety))


# ----------------------------------------------------------------------------- BM25 and pairs

def test_bm25_index_gives_run_mmarco_s_run(flores_main_job, tmp_path):
    """The runs and gap table of the README's main job (run_mmarco.py on FLORES, conftest),
    from the API on the data that job built."""
    import crossvariety
    from crossvariety.runs import read_run
    folder, proc, _ = flores_main_job
    table = read_table(proc.stdout)
    dataset = folder / "data" / "flores200-devtest-fr"
    built = {p: p.stat().st_mtime_ns for p in dataset.iterdir()}
    pair = crossvariety.flores_pair("ca-fr", data_dir=folder / "data")
    assert pair.collection.spec == str(dataset)  # run_mmarco.py's copy, reused as it is
    assert {p: p.stat().st_mtime_ns for p in dataset.iterdir()} == built
    assert (pair.language, pair.highres, pair.variety) == ("fr", "fr", "ca")

    index = crossvariety.Bm25Index(tmp_path / "fr.bm25", language=pair.language)
    assert not index.built() and index.index(pair.get_corpus_iter()) is index
    bm25 = index.bm25(num_results=1000)
    catalan = crossvariety.VarietyQueries(pair.get_topics("ca"))
    for label, pipeline in (("fr", bm25), ("ca", catalan >> bm25)):
        ours = pipeline(pair.get_topics())
        theirs = read_run(folder / "runs" / "flores" / f"flores200-devtest-fr.bm25.q-{label}.retrieve.res.gz")
        key = ["qid", "docno"]
        merged = ours.merge(theirs, on=key, how="outer", suffixes=("", "_script"),
                            indicator=True)
        assert (merged._merge == "both").all() and len(ours) == len(theirs) > 50_000
        np.testing.assert_allclose(merged.score, merged.score_script, atol=1e-4)
    # the index reopened by path knows its analysis; a different one is refused
    assert crossvariety.Bm25Index(tmp_path / "fr.bm25").language == "fr"
    from crossvariety.errors import UserError
    with pytest.raises(UserError, match="another analysis"):
        crossvariety.Bm25Index(tmp_path / "fr.bm25", language="fr", ngram=4)
    with pytest.raises(UserError, match="already built"):
        index.index(pair.get_corpus_iter())

    # % and pt.Experiment: the gap pt.Experiment measures is the script's table
    assert set((bm25 % 10)(pair.get_topics().head(5)).groupby("qid").size()) == {10}
    from pyterrier.measures import RR, R
    result = pt.Experiment([bm25, catalan >> bm25], pair.get_topics(), pair.get_qrels(),
                           eval_metrics=[RR@10, R@1000], names=["fr", "ca"], baseline=0,
                           correction="bonferroni").set_index("name")
    for label in ("fr", "ca"):
        row = table[f"ca-fr q-{label}"]
        assert f"{result.loc[label, 'RR@10']:.4f}" == row["MRR@10"].rstrip("†")
        assert f"{result.loc[label, 'R@1000']:.4f}" == row["R@1000"].rstrip("†")
    assert f"{result.loc['ca', 'RR@10 p-value corrected']:.3g}" == \
        f"{float(table['ca-fr q-ca']['MRR@10 p']):.3g}"

    # the documents' text for a re-ranker, as from an ir_datasets dataset
    with_text = (bm25 % 2 >> pt.text.get_text(pair, "text"))(pair.get_topics().head(1))
    assert with_text.text.str.len().min() > 100


def test_variety_queries_swap_by_qid_and_refuse_missing_ones():
    import crossvariety
    topics = pd.DataFrame({"qid": ["101", "102"], "query": ["a", "b"]})
    out = crossvariety.VarietyQueries({"102": "B", "101": "A", "103": "C"})(topics)
    assert out[["qid", "query", "query_0"]].values.tolist() == [["101", "A", "a"],
                                                                 ["102", "B", "b"]]
    with pytest.raises(ValueError, match="1 qids have no variety query"):
        crossvariety.VarietyQueries(pd.DataFrame({"qid": ["101"], "query": ["A"]}))(topics)


# ----------------------------------------------------------------------------- neural models

TOPICS = pd.DataFrame({"qid": list(FR_DEV_QUERIES), "query": list(FR_DEV_QUERIES.values())})
DOCS = [{"docno": d, "text": t} for d, t in FR_PASSAGES.items()]


def test_bgem3_as_pyterrier_dr_with_our_encoder(tmp_path, tiny_xlmr):
    import crossvariety
    from crossvariety.families import dense
    model = crossvariety.BGEM3(model_name=str(tiny_xlmr), batch_size=3, max_length=128)
    reference = dense.BgeM3Encoder(str(tiny_xlmr), max_length=128, verbose=False)
    topics = pd.concat([TOPICS, TOPICS.head(1).assign(qid="x")])  # a query twice
    queries = model.query_encoder()(topics)
    np.testing.assert_allclose(np.stack(queries.query_vec), reference.encode(topics["query"]),
                               atol=1e-5)
    docs = model.doc_encoder()(pd.DataFrame(DOCS))
    doc_vectors = reference.encode([d["text"] for d in DOCS])
    np.testing.assert_allclose(np.stack(docs.doc_vec), doc_vectors, atol=1e-5)
    assert list(model(TOPICS).columns) == ["qid", "query", "query_vec"]  # picks by columns

    # our indexer, and pyterrier-dr's FlexIndex indexer fed by our doc_encoder: the same run as
    # the scripts' dense_retriever
    index = crossvariety.DenseIndex(tmp_path / "dense")
    index.index(iter(DOCS), model)
    flex = crossvariety.DenseIndex(tmp_path / "flex")
    (model.doc_encoder() >> flex.indexer()).index(DOCS)
    script = dense.dense_retriever(index.path, reference, num_results=5)(TOPICS)
    for idx in (index, flex):
        run = (model.query_encoder() >> idx.retriever(num_results=5))(TOPICS)
        assert list(run.columns) == list(script.columns)
        assert run.docno.tolist() == script.docno.tolist()
        np.testing.assert_allclose(run.score, script.score, atol=1e-5)
    pipeline = model.query_encoder() >> index.retriever() % 3
    assert set(pipeline(TOPICS).groupby("qid").size()) == {3}
    from crossvariety.errors import UserError
    with pytest.raises(UserError, match="already built"):
        index.index(iter(DOCS), model)
    rebuilt = index.indexer(model, mode="overwrite").index(iter(DOCS[:4]))
    assert len(rebuilt) == 4 and rebuilt.built()
    # re-ranking texts: the retriever's scores
    with_text = script.assign(text=script.docno.map(FR_PASSAGES))
    scored = model.text_scorer()(with_text)
    np.testing.assert_allclose(scored.score, script.score, atol=1e-5)


def test_mt5_reranker_is_monot5_with_pyterrier_t5_arguments(tiny_mt5):
    import crossvariety
    from crossvariety.rerank.monot5 import MonoT5ReRanker
    frame = pd.DataFrame([(q, t, d, FR_PASSAGES[d]) for q, t in FR_DEV_QUERIES.items()
                          for d in FR_PASSAGES], columns=["qid", "query", "docno", "text"])
    ours = crossvariety.mT5ReRanker(str(tiny_mt5), str(tiny_mt5), 4, "text", False)(frame)
    reference = MonoT5ReRanker(str(tiny_mt5), verbose=False)(frame)
    np.testing.assert_allclose(ours.score, reference.score, atol=1e-6)
    assert list(ours["rank"]) == list(reference["rank"]) and ours.score.std() > 1e-3
    named = crossvariety.mT5ReRanker(model=str(tiny_mt5), verbose=False)
    assert set((named % 2)(frame).groupby("qid").size()) == {2}


def test_colbertxm_and_plaid_index_give_colbert_retriever_s_run(tmp_path, tiny_colbert_xm):
    import crossvariety
    from crossvariety.families import colbert, plaid, plaid_search
    model = crossvariety.ColBERTXM(model_name=str(tiny_colbert_xm), language="fr")
    encoder = colbert.ColBERTXMEncoder(str(tiny_colbert_xm), language="fr", verbose=False)
    embs = model.query_encoder()(TOPICS)
    np.testing.assert_allclose(np.stack(embs.query_embs),
                               encoder.encode_queries(TOPICS["query"].tolist()).numpy(),
                               atol=1e-6)
    docs = model.doc_encoder()(pd.DataFrame(DOCS))
    vectors, lengths = encoder.encode_docs([d["text"] for d in DOCS])
    assert [len(m) for m in docs.doc_embs] == lengths.tolist()

    index = crossvariety.PlaidIndex(tmp_path / "plaid")
    index.index(iter(DOCS), model)  # a one-pass iterator: PLAID reads the documents twice
    assert index.built() and index.language == "fr_XX" and len(index) == len(DOCS)
    assert [p.name for p in tmp_path.iterdir()] == ["plaid"]  # no spool left beside it
    plaid.build_index(lambda: iter(DOCS), encoder, tmp_path / "script", total=len(DOCS))
    script = plaid_search.colbert_retriever(tmp_path / "script", encoder, num_results=4)(TOPICS)
    run = (model.query_encoder() >> index.retriever(num_results=4))(TOPICS)
    assert run.docno.tolist() == script.docno.tolist()
    np.testing.assert_allclose(run.score, script.score, atol=1e-5)
    # re-ranking texts: exact MaxSim, the scores PLAID's last stage computes from compressed
    # vectors (close, not equal)
    scored = model.text_scorer()(run.assign(text=run.docno.map(FR_PASSAGES)))
    np.testing.assert_allclose(scored.score, run.score, atol=0.5)
    assert set((model.query_encoder() >> index.retriever() % 2)(TOPICS).groupby("qid")
               .size()) == {2}


def test_readme_neural_example_runs_with_stand_ins_at_the_real_model_ids(
        tmp_path, monkeypatch, irds_home, tiny_xlmr, tiny_mt5, tiny_colbert_xm):
    """The README's BGE-M3 >> mT5 and ColBERT-XM block, run as written over the toy French
    mMARCO (conftest) instead of FLORES: tiny random models published at the paper's hub ids,
    in the layouts the hub has them (the mT5 checkpoint without a tokenizer, ...), served
    offline from a Hugging Face cache."""
    import huggingface_hub
    import crossvariety
    from conftest import CA_DEV_QUERIES, fake_hub
    from crossvariety.data.pairs import get_pairs
    from crossvariety.neural.random_models import published_files
    from pyterrier.measures import RR, R
    tested, _, neural = readme_python_blocks()
    compile(tested + neural, "README.md", "exec")
    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    for repo, model, layout in (("andreaschari/bge-m3-lt-cafr", tiny_xlmr, "bge-m3-lt-cafr"),
                                ("andreaschari/mt5-unicamp-lt-cafr", tiny_mt5, "mt5-lt"),
                                ("unicamp-dl/mt5-base-mmarco-v2", tiny_mt5, "mt5-base-mmarco"),
                                ("andreaschari/colbert-xm-lt-cafr", tiny_colbert_xm,
                                 "colbert-xm-lt")):
        assert repo in neural or repo == "unicamp-dl/mt5-base-mmarco-v2"
        fake_hub(hub, repo, published_files(model, layout), "model")
    variety = tmp_path / "ca.tsv"
    variety.write_text("".join(f"{q}\t{t}\n" for q, t in CA_DEV_QUERIES.items()))
    pair = crossvariety.PairDataset(get_pairs(["ca-fr"])[0], "irds:mmarco/v2/fr",
                                    "irds:mmarco/v2/fr/dev/small", variety)
    monkeypatch.chdir(tmp_path)
    scope = {"pt": pt, "RR": RR, "R": R, "crossvariety": crossvariety, "pair": pair,
             "catalan": crossvariety.VarietyQueries(pair.get_topics("ca"))}
    exec(neural, scope)
    for name in ("bgem3_mt5", "colbert_xm"):
        for queries in (pair.get_topics(), scope["catalan"](pair.get_topics())):
            run = scope[name](queries)
            assert set(run.groupby("qid").size()) == {10}, name  # all 10 passages, ranked
    assert scope["mt5"].tokenizer_name == "unicamp-dl/mt5-base-mmarco-v2"
    assert (tmp_path / "indexes" / "flores-fr.colbert-xm-lt-cafr" / "meta.json").is_file()
