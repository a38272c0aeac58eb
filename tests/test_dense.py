import json

import numpy as np
import pandas as pd
import pytest

from conftest import CA_DEV_QUERIES, FR_DEV_QUERIES, FR_PASSAGES, QRELS_SMALL, assert_row, \
    assert_ranked, exhaustive_dense, read_table, reference_means, run_script
from crossvariety.neural import chunks
from crossvariety.families import dense
from crossvariety.errors import UserError
from crossvariety.neural.random_models import synthetic_passages

PASSAGES = synthetic_passages(240, seed=3)


@pytest.fixture(scope="session")
def encoder(tiny_xlmr):
    return dense.BgeM3Encoder(str(tiny_xlmr), max_length=128, verbose=False)


def test_vectors_match_flagembedding(tiny_xlmr, encoder):
    from FlagEmbedding import BGEM3FlagModel
    long = " ".join(PASSAGES[:10])
    docs = PASSAGES[:40] + [long, "é ü 中文 Зелёные ёлки", "a", ""]
    assert len(encoder.tokenizer(long)["input_ids"]) > 128  # truncated
    reference = BGEM3FlagModel(str(tiny_xlmr), use_fp16=False, devices="cpu")
    expected = reference.encode(docs, max_length=128, batch_size=8)["dense_vecs"]
    ours = encoder.encode(docs)
    assert np.abs(ours - expected).max() <= 1e-5  # fp32 both, the same weights (measured 5e-7)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # the vectors are not all the same: a retrieval test on them means something
    assert (ours[:40] @ ours[:40].T)[np.triu_indices(40, 1)].mean() < 0.9


def docs_iter(passages):
    return ({"docno": f"p{i}", "text": t} for i, t in enumerate(passages))


@pytest.fixture(scope="session")
def lexical_encoder(lexical_xlmr):
    return dense.BgeM3Encoder(str(lexical_xlmr), max_length=128, verbose=False)


def test_torch_search_matches_np_retriever(tmp_path, lexical_encoder):
    """The same ranking as pyterrier-dr's numpy retriever, document for document (the lexical
    encoder leaves no near-ties)."""
    index = tmp_path / "idx"
    assert dense.build_index(docs_iter(PASSAGES), lexical_encoder, index, chunk_docs=100)
    assert dense.index_built(index) and not chunks.parts_dir(index).exists()
    from pyterrier_dr import FlexIndex
    assert len(FlexIndex(str(index))) == len(PASSAGES)
    queries = pd.DataFrame({"qid": [str(i) for i in range(20)],
                            "query": [" ".join(p.split()[:8]) for p in PASSAGES[:20]]})
    with_vecs = dense.QueryEncoder(lexical_encoder)(queries)
    reference = FlexIndex(str(index)).np_retriever(num_results=10)(with_vecs)
    search = dense.TorchSearch(index, num_results=10, device="cpu", query_batch=3)
    ours = search(with_vecs)  # 7 batches: each collected while the next one is scored
    assert len(ours) == len(reference) == 200
    assert list(ours.columns) == ["qid", "query", "docid", "docno", "score", "rank"]
    again = dense.TorchSearch.from_vectors(search.docnos, search.vectors, 10)(with_vecs)
    pd.testing.assert_frame_equal(again, ours)
    for qid in queries.qid:
        a = reference[reference.qid == qid].sort_values("rank")
        b = ours[ours.qid == qid].sort_values("rank")
        np.testing.assert_allclose(a.score.to_numpy(), b.score.to_numpy(), atol=1e-5)
        assert np.diff(a.score.to_numpy()).max() < -1e-5  # no near-ties: one right order
        assert list(b.docno) == list(a.docno) and list(b["rank"]) == list(range(10))
    assert ours[ours["rank"] == 0].docno.nunique() >= 10  # the ranking depends on the query


class CountingEncoder:
    """An encoder that counts what it encodes and can fail after some calls (a killed job)."""

    def __init__(self, encoder, fail_after=None):
        self.encoder, self.fail_after, self.calls = encoder, fail_after, 0
        self.model_name, self.max_length = encoder.model_name, encoder.max_length
        self.precision = encoder.precision

    def encode(self, texts, desc=""):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        return self.encoder.encode(texts)


def test_killed_and_sharded_builds_resume_and_merge(tmp_path, encoder):
    one_shot = tmp_path / "one"
    dense.build_index(docs_iter(PASSAGES), encoder, one_shot, chunk_docs=50)

    index = tmp_path / "sharded"
    killed = CountingEncoder(encoder, fail_after=1)
    with pytest.raises(KeyboardInterrupt):  # shard 0/2 dies after its first chunk
        dense.build_index(docs_iter(PASSAGES), killed, index, shard="0/2", chunk_docs=50)
    assert sorted(p.name for p in chunks.parts_dir(index).glob("part-*")) == ["part-000000.npz"]
    assert not dense.index_built(index)

    resumed = CountingEncoder(encoder)
    assert not dense.build_index(docs_iter(PASSAGES), resumed, index, shard="0/2", chunk_docs=50)
    assert resumed.calls == 2  # chunks 2 and 4; chunk 0 was kept
    assert chunks.missing_chunks(index) == [1, 3]
    with pytest.raises(UserError, match="missing"):
        dense.merge_chunks(index)
    in_bf16 = CountingEncoder(encoder)
    in_bf16.precision = "bf16"  # a shard in another precision must not mix its chunks in
    with pytest.raises(UserError, match="other settings \\(dtype: 'fp32', now 'bf16'\\)"):
        dense.build_index(docs_iter(PASSAGES), in_bf16, index, shard="1/2", chunk_docs=50)
    assert in_bf16.calls == 0
    other = CountingEncoder(encoder)
    assert dense.build_index(docs_iter(PASSAGES), other, index, shard="1/2", chunk_docs=50)
    assert other.calls == 2

    from pyterrier_dr import FlexIndex
    docnos_a, vecs_a, _ = FlexIndex(str(one_shot)).payload()
    docnos_b, vecs_b, _ = FlexIndex(str(index)).payload()
    assert list(docnos_b.fwd[np.arange(len(PASSAGES))]) == [f"p{i}" for i in range(len(PASSAGES))]
    np.testing.assert_allclose(np.asarray(vecs_a), np.asarray(vecs_b), atol=1e-6)


def test_a_collection_that_fails_midway_keeps_the_chunks_before(tmp_path, encoder):
    """The collection is read a chunk ahead on a thread: its error still ends the job, after
    the chunks read before it are saved whole, and nothing half-written is left."""
    def failing_docs():
        yield from docs_iter(PASSAGES[:100])
        raise UserError("docs.tsv:101: no tab between docno and text")

    index = tmp_path / "failing"
    with pytest.raises(UserError, match="docs.tsv:101"):
        dense.build_index(failing_docs(), encoder, index, chunk_docs=40)
    assert sorted(p.name for p in chunks.parts_dir(index).iterdir()) == \
        ["meta.json", "part-000000.npz", "part-000001.npz"]
    assert not dense.index_built(index)


def test_bad_shard_spec():
    for bad in ("2/2", "1", "a/b", "-1/3"):
        with pytest.raises(ValueError, match="i/n"):
            chunks.parse_shard(bad)


def test_index_bgem3_and_run_mmarco_dense_end_to_end(workdir, lexical_xlmr):
    """The lexical encoder's runs rank the toy passages as FlagEmbedding's vectors do, with
    every passage scored: French queries find their passage first (MRR@10 1), Catalan ones
    less often; the table prints those values."""
    run_script("index_bgem3.py", "--dataset", "irds:mmarco/v2/fr", "--model", lexical_xlmr,
               "--max-length", "128", cwd=workdir)
    index = workdir / "indexes" / lexical_xlmr.name / "mmarco-v2-fr"
    assert dense.index_built(index)
    proc = run_script("run_mmarco.py", "--pairs", "ca-fr", "--model", lexical_xlmr, "--evaluate",
                      "--max-length", "128", cwd=workdir)
    table = read_table(proc.stdout)
    from crossvariety import runs
    judged = dict(QRELS_SMALL)
    for queries, texts in (("fr", FR_DEV_QUERIES), ("ca", CA_DEV_QUERIES)):
        expected = exhaustive_dense(lexical_xlmr, {q: texts[q] for q in judged}, FR_PASSAGES, 128)
        run = runs.read_run(workdir / "runs" / f"mmarco-v2-fr-dev-small.{lexical_xlmr.name}."
                                              f"q-{queries}.retrieve.res.gz")
        for qid, scores in expected.items():
            got = run[run.qid == qid].sort_values("rank")
            assert_ranked(got.docno, scores, 1e-5)
            np.testing.assert_allclose(got.score, sorted(scores.values(), reverse=True),
                                       atol=1e-5)
        assert_row(table[f"ca-fr q-{queries}"], reference_means(expected, QRELS_SMALL))
    assert table["ca-fr q-fr"]["MRR@10"] == "1.0000"  # the answer known by construction
    assert float(table["ca-fr q-ca"]["MRR@10"].rstrip("†")) < 0.5

    # a re-run finds the index; the precision is recorded (a CPU's auto is fp32), and a run of
    # another precision is not reused
    proc = run_script("index_bgem3.py", "--dataset", "irds:mmarco/v2/fr", "--model", lexical_xlmr,
                      "--max-length", "128", cwd=workdir)
    assert "already built" in proc.stderr
    assert json.loads((index / "crossvariety.json").read_text())["dtype"] == "fp32"
    run = workdir / "runs" / f"mmarco-v2-fr-dev-small.{lexical_xlmr.name}.q-ca.retrieve.res.gz"
    assert runs.run_precision(run) == "fp32"
    with pytest.raises(UserError, match=r"made in fp32, not bf16: pass --dtype fp32 to reuse"):
        runs.cached_run(run, lambda: pytest.fail("recomputed"), precision="bf16")


def test_index_bgem3_merge_only_and_overwrite(workdir, tiny_xlmr, encoder):
    """Shards that encoded every chunk but did not merge (a merging job killed): --merge-only
    writes the index, the same as one job's; --overwrite encodes it again from scratch."""
    index = workdir / "indexes" / tiny_xlmr.name / "mmarco-v2-fr"
    from crossvariety.data.datasets import Dataset
    collection = Dataset("irds:mmarco/v2/fr")
    for shard in ("0/2", "1/2"):
        dense.encode_chunks(collection.docs_iter(), encoder, index, shard=shard, chunk_docs=4)
    assert chunks.missing_chunks(index) == [] and not dense.index_built(index)
    run_script("index_bgem3.py", "--dataset", "irds:mmarco/v2/fr", "--model", tiny_xlmr,
               "--merge-only", cwd=workdir)
    assert dense.index_built(index) and not chunks.parts_dir(index).exists()
    whole = workdir / "whole"
    dense.build_index(collection.docs_iter(), encoder, whole)
    from pyterrier_dr import FlexIndex
    merged, vectors, _ = FlexIndex(str(index)).payload()
    assert list(merged.fwd[np.arange(10)]) == list(FR_PASSAGES)
    np.testing.assert_allclose(np.asarray(vectors), np.asarray(FlexIndex(str(whole)).payload()[1]),
                               atol=1e-6)
    before = (index / "vecs.f4").stat().st_mtime_ns
    proc = run_script("index_bgem3.py", "--dataset", "irds:mmarco/v2/fr", "--model", tiny_xlmr,
                      "--max-length", "128", "--overwrite", cwd=workdir)
    assert (index / "vecs.f4").stat().st_mtime_ns != before and "already built" not in proc.stderr
    np.testing.assert_allclose(np.asarray(FlexIndex(str(index)).payload()[1]), np.asarray(vectors),
                               atol=1e-6)


def test_flex_index_writer_equals_pyterrier_drs_indexer(tmp_path):
    """merge_chunks writes the FlexIndex a whole array at a time: the same files, byte for byte,
    as pyterrier-dr's indexer (a dict per vector)."""
    from pyterrier_dr import FlexIndex
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    docnos = [f"doc-{i * 7919 % 1000}" for i in range(300)]
    FlexIndex(str(tmp_path / "theirs"), verbose=False).indexer(mode="overwrite").index(
        {"docno": d, "doc_vec": v} for d, v in zip(docnos, vectors))
    dense.write_flex_index(tmp_path / "ours", [(docnos[:100], vectors[:100]),
                                               (np.array(docnos[100:]), vectors[100:])])
    theirs = sorted(p.relative_to(tmp_path / "theirs") for p in (tmp_path / "theirs").rglob("*")
                    if p.is_file())
    assert theirs == sorted(p.relative_to(tmp_path / "ours") for p in
                            (tmp_path / "ours").rglob("*") if p.is_file())
    for name in theirs:
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "theirs" / name).read_bytes()
    found, vecs, _ = FlexIndex(str(tmp_path / "ours")).payload()
    assert list(found.fwd[np.arange(300)]) == docnos and np.array_equal(np.asarray(vecs), vectors)
