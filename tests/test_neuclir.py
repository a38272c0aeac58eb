"""neuMARCO and neuCLIR under their real irds: ids, served from fixture files."""
import pytest

from conftest import EN_QRELS, EN_QUERIES, FA_PASSAGES, NEUCLIR_QRELS, NEUCLIR_TOPICS, assert_row, \
    assert_ranked, exhaustive_dense, read_table, reference_means, reference_rerank, run_script
from crossvariety.data.datasets import Dataset


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


def neuclir_texts():
    """neuCLIR's documents as the scripts read them (title, newline, text)."""
    return {d["docno"]: d["text"] for d in Dataset("irds:neuclir/1/fa").collection().docs_iter()}


def test_run_neuclir_end_to_end(workdir, lexical_xlmr, tiny_xlmr, lexical_mt5):
    """Two models over neuMARCO and neuCLIR: each run ranks every document as FlagEmbedding's
    vectors do, each table row prints the reference's means; then the Persian topic titles,
    re-ranked by the lexical mT5, find the documents that share their words first."""
    from crossvariety.runs import read_run
    datasets = ["irds:neumarco/fa/dev/small", "irds:neuclir/1/fa/trec-2022"]
    proc = run_script("run_neuclir.py", "--datasets", *datasets, "--models", lexical_xlmr,
                      tiny_xlmr, cwd=workdir)
    runs = workdir / "runs"
    tables = [read_table(t) for t in proc.stdout.split("\n\n") if t.strip()]
    titles = {q: title for q, (title, _) in NEUCLIR_TOPICS.items()}
    for model in (lexical_xlmr, tiny_xlmr):
        # one index per model and collection, shared by the topic sets of that collection
        assert (workdir / "indexes" / model.name / "neuclir-1-fa" / "pt_meta.json").is_file()
        for table, name, queries, docs, qrels, measures in (
                (tables[0], "neumarco-fa-dev-small", EN_QUERIES, FA_PASSAGES, EN_QRELS,
                 ("MRR@10", "R@1000")),
                (tables[1], "neuclir-1-fa-trec-2022", titles, neuclir_texts(), NEUCLIR_QRELS,
                 ("nDCG@20", "R@1000"))):
            expected = exhaustive_dense(model, queries, docs)
            run = read_run(runs / f"{name}.{model.name}.q-{'en' if 'neumarco' in name else 'title'}"
                                  ".retrieve.res.gz")
            for qid, scores in expected.items():
                assert_ranked(run[run.qid == qid].sort_values("rank").docno, scores, 1e-5)
            assert_row(table[f"{name} {model.name}"], reference_means(expected, qrels, measures))
    assert "nDCG@20 p" in tables[1][f"neuclir-1-fa-trec-2022 {tiny_xlmr.name}"]  # vs the first

    proc = run_script("run_neuclir.py", "--datasets", datasets[1], "--models", lexical_xlmr,
                      "--query-field", "ht_title", "--rerank", lexical_mt5, cwd=workdir)
    first = runs / f"neuclir-1-fa-trec-2022.{lexical_xlmr.name}.q-ht_title.retrieve.res.gz"
    persian = {q: fa for q, (_, fa) in NEUCLIR_TOPICS.items()}
    # ht_title runs are new runs, of the Persian titles
    assert read_run(first).groupby("qid").size().to_dict() == {"301": 5, "302": 5}
    assert_row(read_table(proc.stdout)[f"neuclir-1-fa-trec-2022 {lexical_xlmr.name} >> "
                                       f"{lexical_mt5.name}"],
               reference_means(reference_rerank(lexical_mt5, read_run(first), persian,
                                                neuclir_texts(), 1000), NEUCLIR_QRELS,
                               ("nDCG@20", "R@1000")))
    reranked = read_run(runs / f"neuclir-1-fa-trec-2022.{lexical_xlmr.name}.q-ht_title.rerank-"
                               f"{lexical_mt5.name}.res.gz")
    expected = reference_rerank(lexical_mt5, read_run(first), persian, neuclir_texts(), 1000)
    for qid, scores in expected.items():
        assert_ranked(reranked[reranked.qid == qid].sort_values("rank").docno, scores, 1e-5)
    assert reranked[reranked["rank"] == 0].set_index("qid").docno.to_dict() == \
        {"301": "f1", "302": "f2"}  # the documents that share the titles' words
    # (an unknown --query-field: the user-error table, tests/test_user_errors.py)
