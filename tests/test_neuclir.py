"""neuMARCO and neuCLIR under their real irds: ids, served from fixture files."""
import gzip

import pytest

from conftest import EN_QUERIES, FA_PASSAGES, NEUCLIR_TOPICS, run_script, tiny_xlmr_texts
from crossvariety.datasets import Dataset
from crossvariety.random_models import build_xlmr


def test_neumarco_and_neuclir_fixtures_load(irds_home):
    neumarco = Dataset("irds:neumarco/fa/dev/small")
    assert neumarco.collection().spec == "irds:neumarco/fa"
    assert dict(neumarco.queries().values.tolist()) == EN_QUERIES
    assert len(list(neumarco.collection().docs_iter())) == len(FA_PASSAGES)
    neuclir = Dataset("irds:neuclir/1/fa/trec-2022")
    assert neuclir.collection().spec == "irds:neuclir/1/fa"
    with pytest.raises(ValueError, match="choose one"):
        neuclir.queries()  # several fields, no "text": the caller must pick
    assert dict(neuclir.queries("title").values.tolist()) == {
        q: t for q, (t, _) in NEUCLIR_TOPICS.items()}
    assert dict(neuclir.queries("ht_title").values.tolist()) == {
        q: fa for q, (_, fa) in NEUCLIR_TOPICS.items()}
    first = next(neuclir.collection().docs_iter())
    assert first == {"docno": "f0", "text": "عنوان 0\n" + FA_PASSAGES["f0"]}  # title + text
    assert sorted(neuclir.qrels().label) == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def finetuned_xlmr(tmp_path_factory):
    """A second encoder, standing in for a fine-tuned BGE-M3."""
    return build_xlmr(tmp_path_factory.mktemp("tuned-xlmr"), tiny_xlmr_texts() * 3,
                      vocab_size=1500, seed=1)


def test_run_neuclir_end_to_end(workdir, tiny_xlmr, finetuned_xlmr, tiny_mt5):
    datasets = ["irds:neumarco/fa/dev/small", "irds:neuclir/1/fa/trec-2022"]
    proc = run_script("run_neuclir.py", "--datasets", *datasets, "--models", tiny_xlmr,
                      finetuned_xlmr, cwd=workdir)
    runs = workdir / "runs"
    for model in (tiny_xlmr.name, finetuned_xlmr.name):
        assert (runs / f"neumarco-fa-dev-small.{model}.q-en.retrieve.res.gz").is_file()
        assert (runs / f"neuclir-1-fa-trec-2022.{model}.q-title.retrieve.res.gz").is_file()
        # one index per model and collection, shared by the topic sets of that collection
        assert (workdir / "indexes" / model / "neuclir-1-fa" / "pt_meta.json").is_file()
    tables = proc.stdout.split("\n\n")
    assert "MRR@10" in tables[0] and "nDCG@20" in tables[1] and "R@1000" in tables[1]
    assert f"neuclir-1-fa-trec-2022 {finetuned_xlmr.name}" in tables[1]
    assert "nDCG@20 p" in tables[1]  # significance against the first model

    proc = run_script("run_neuclir.py", "--datasets", datasets[1], "--models", tiny_xlmr,
                      "--query-field", "ht_title", "--rerank", tiny_mt5, cwd=workdir)
    reranked = runs / f"neuclir-1-fa-trec-2022.{tiny_xlmr.name}.q-ht_title.rerank-{tiny_mt5.name}.res.gz"
    rows = gzip.open(reranked, "rt").read().splitlines()
    assert {r.split()[0] for r in rows} == set(NEUCLIR_TOPICS)
    assert f"{tiny_xlmr.name} >> {tiny_mt5.name}" in proc.stdout
    assert "reusing" not in proc.stderr  # ht_title runs are new runs

    proc = run_script("run_neuclir.py", "--datasets", datasets[1], "--models", tiny_xlmr,
                      "--query-field", "summary", cwd=workdir, check=False)
    assert proc.returncode != 0 and "no field 'summary'" in proc.stderr
