"""Jobs at once on one index (the same command twice, the shards of a job array finishing
together), torchrun ranks splitting indexing and re-ranking, and the temporary files of killed
processes: one correct index or run, no traceback, nothing left behind."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from conftest import IRDS_HOME, REPO
from crossvariety.neural import chunks
from crossvariety.families import dense
from crossvariety import runs
from crossvariety.neural.random_models import synthetic_passages

PASSAGES = [" ".join(p.split()[:30]) for p in synthetic_passages(40, seed=11)]
CHUNK_DOCS = 4  # 10 chunks
INDEX_ARGS = ["--max-length", "64", "--chunk-docs", str(CHUNK_DOCS)]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("collection")
    (folder / "docs.tsv").write_text("".join(f"d{i}\t{t}\n" for i, t in enumerate(PASSAGES)),
                                     encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def one_process_index(tmp_path_factory, tiny_xlmr):
    """The index one process builds (index_bgem3.py's encoder and settings, in this process)."""
    index = tmp_path_factory.mktemp("one") / "index"
    encoder = dense.BgeM3Encoder(str(tiny_xlmr), max_length=64, verbose=False)
    assert dense.build_index(({"docno": f"d{i}", "text": t} for i, t in enumerate(PASSAGES)),
                             encoder, index, chunk_docs=CHUNK_DOCS)
    return index


def start(*command, cwd, log):
    """A process as a user starts one, its stderr into the file ``log``."""
    env = dict(os.environ, IR_DATASETS_HOME=str(IRDS_HOME), PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, *map(str, command)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))


def finish(processes, logs):
    """Wait for the processes; their stderr texts, after checking that each ended well."""
    texts = []
    for process, log in zip(processes, logs):
        process.wait(timeout=600)
        texts.append(log.read_text())
        assert process.returncode == 0, texts[-1]
        assert "Traceback" not in texts[-1], texts[-1]
    return texts


def index_jobs_at_once(commands, index, tmp_path):
    """Run the index commands together: the test holds the index's lock (as a job merging it
    would) until every job waits for it, so that they start encoding at the same moment."""
    logs = [tmp_path / f"job{j}.log" for j in range(len(commands))]
    with chunks.index_lock(index):
        processes = [start(*command, cwd=tmp_path, log=log) for command, log in zip(commands, logs)]
        deadline = time.time() + 300
        while not all("waiting for another job merging or removing" in log.read_text()
                      for log in logs):
            assert time.time() < deadline and all(p.poll() is None for p in processes), \
                [log.read_text() for log in logs]
            time.sleep(0.2)
    return finish(processes, logs)


def assert_same_index(index, reference):
    """The same docnos in the same order, the same vectors (fp32 on a CPU, within float
    rounding), and nothing left beside the index."""
    from pyterrier_dr import FlexIndex
    docnos, vectors, meta = FlexIndex(str(index)).payload()
    ref_docnos, ref_vectors, ref_meta = FlexIndex(str(reference)).payload()
    assert meta["doc_count"] == ref_meta["doc_count"] == len(PASSAGES)
    assert list(docnos.fwd[np.arange(len(PASSAGES))]) == \
        list(ref_docnos.fwd[np.arange(len(PASSAGES))])
    np.testing.assert_allclose(np.asarray(vectors), np.asarray(ref_vectors), rtol=0, atol=1e-6)
    assert sorted(p.name for p in index.parent.iterdir()) == [index.name]  # no parts, lock, temp


def encoded(logs):
    """Documents each job encoded, from its log."""
    return [sum(int(n) for n in re.findall(r"encoded (\d+) documents", log)) for log in logs]


def test_the_same_index_command_twice_at_once(tmp_path, tiny_xlmr, collection,
                                              one_process_index):
    """Two index_bgem3.py on one index: they share the chunks (each encoded once), one merges,
    the other reports it; no traceback (before: FileNotFoundError part-000000.npz)."""
    index = tmp_path / "indexes" / "index"
    command = [REPO / "index_bgem3.py", "--dataset", collection, "--model", tiny_xlmr,
               "--index", index, *INDEX_ARGS]
    logs = index_jobs_at_once([command, command], index, tmp_path)
    assert_same_index(index, one_process_index)
    assert sum(encoded(logs)) == len(PASSAGES)
    assert sum("merged 10 chunks" in log for log in logs) == 1
    assert sum("is complete (merged by another job)" in log for log in logs) == 1


def test_two_shards_saving_their_last_chunks_at_once_merge_once(tmp_path, tiny_xlmr,
                                                                 one_process_index,
                                                                 monkeypatch):
    """Two --shard jobs finishing together: shards 0/2 and 1/2 (threads here, in step through a
    barrier; two processes go through the same chunks.build as the test above) encode their
    last chunks at the same moment, so both find every chunk saved: one merges, the other finds
    the index merged (before: both merged, or read a half-written shard-*.done)."""
    merges, both_last = [], threading.Barrier(2, timeout=300)
    merge_chunks = dense.merge_chunks
    monkeypatch.setattr(dense, "merge_chunks", lambda index: merges.append(index) or
                        merge_chunks(index))
    index = tmp_path / "indexes" / "index"
    results = {}
    encoders = [dense.BgeM3Encoder(str(tiny_xlmr), max_length=64, verbose=False)
                for _ in range(2)]  # (loading a model is not thread-safe)

    def shard(i):
        encoder = encoders[i]
        original = encoder.encode

        def encode(texts, desc=""):
            vectors = original(texts)
            if desc == f"chunk {8 + i}":  # its last
                both_last.wait()
            return vectors
        encoder.encode = encode
        docs = ({"docno": f"d{k}", "text": t} for k, t in enumerate(PASSAGES))
        try:
            results[i] = dense.build_index(docs, encoder, index, shard=f"{i}/2",
                                           chunk_docs=CHUNK_DOCS)
        except Exception as e:
            results[i] = e
    threads = [threading.Thread(target=shard, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {0: True, 1: True} and merges == [index]
    assert_same_index(index, one_process_index)


def test_torchrun_index_bgem3_equals_one_process(tmp_path, tiny_xlmr, collection,
                                                 one_process_index):
    """torchrun --nproc_per_node 2 (gloo on a CPU): each rank encodes half the chunks, rank 0
    merges; the index is the one-process index, array for array."""
    index = tmp_path / "indexes" / "index"
    log = tmp_path / "torchrun.log"
    process = start("-m", "torch.distributed.run", "--nproc_per_node", "2",
                    REPO / "index_bgem3.py", "--dataset", collection, "--model", tiny_xlmr,
                    "--index", index, *INDEX_ARGS, cwd=tmp_path, log=log)
    [text] = finish([process], [log])
    assert_same_index(index, one_process_index)
    assert "shard 0/2: encoded 20 documents" in text and "shard 1/2: encoded 20 documents" in text
    assert text.count("merged 10 chunks") == 1


def test_torchrun_index_colbertxm_equals_one_process(tmp_path, tiny_colbert_xm, collection):
    """The same for a PLAID index: the first rank trains the codec, the other waits for it on
    its lock; each rank compresses half the chunks, rank 0 merges: the one-process index."""
    from crossvariety.families import plaid
    from crossvariety.families.colbert import ColBERTXMEncoder
    whole = tmp_path / "one" / "index"
    encoder = ColBERTXMEncoder(tiny_colbert_xm, language="fr", device="cpu", verbose=False)
    assert plaid.build_index(lambda: ({"docno": f"d{i}", "text": t}
                                      for i, t in enumerate(PASSAGES)),
                             encoder, whole, chunk_docs=CHUNK_DOCS)
    index = tmp_path / "indexes" / "index"
    log = tmp_path / "torchrun.log"
    process = start("-m", "torch.distributed.run", "--nproc_per_node", "2",
                    REPO / "index_colbertxm.py", "--dataset", collection, "--language", "fr",
                    "--model", tiny_colbert_xm, "--index", index, "--chunk-docs", CHUNK_DOCS,
                    cwd=tmp_path, log=log)
    [text] = finish([process], [log])
    assert text.count("codec: ") == 1 and text.count("merged 10 chunks") == 1
    assert "shard 0/2: encoded 20 documents" in text and "shard 1/2: encoded 20 documents" in text
    for name in ("codes.npy", "residuals.npy", "doclens.npy", "ivf.npy", "ivf_lengths.npy"):
        assert np.array_equal(np.load(whole / name), np.load(index / name)), name
    assert sorted(p.name for p in index.parent.iterdir()) == [index.name]


def test_torchrun_rerank_mt5_equals_one_process(tmp_path, tiny_mt5, collection):
    """torchrun --nproc_per_node 2 rerank_mt5.py: each rank re-ranks half the queries, rank 0
    writes the run: the one-process run's rows in its order, scores within float rounding."""
    from crossvariety.data.datasets import Dataset, load_queries
    from crossvariety.rerank.monot5 import MonoT5ReRanker, attach_text
    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"q{i}\t{' '.join(PASSAGES[i].split()[:6])}\n" for i in range(7)))
    rng = np.random.default_rng(0)
    first = tmp_path / "first.res"
    first.write_text("".join(f"q{i} Q0 d{d} {r} {10 - r} bm25\n" for i in range(7)
                             for r, d in enumerate(rng.choice(len(PASSAGES), 6, replace=False))))
    out = tmp_path / "reranked.res.gz"
    log = tmp_path / "torchrun.log"
    # "--": torchrun would take --run for its own --run-path
    process = start("-m", "torch.distributed.run", "--nproc_per_node", "2", "--",
                    REPO / "rerank_mt5.py", "--run", first, "--dataset", collection,
                    "--queries", queries, "--model", tiny_mt5, "--out", out,
                    cwd=tmp_path, log=log)
    [text] = finish([process], [log])
    assert "24 pairs (rank 0 of 2)" in text and "18 pairs (rank 1 of 2)" in text

    frame = attach_text(runs.read_run(first), load_queries(queries), Dataset(str(collection)),
                        1000)
    # as a run file holds them: by qid, then rank (runs.in_order)
    expected = runs.in_order(MonoT5ReRanker(str(tiny_mt5), verbose=False)(frame))
    got = runs.read_run(out)
    assert got[["qid", "docno", "rank"]].values.tolist() == \
        expected[["qid", "docno", "rank"]].values.tolist()
    np.testing.assert_allclose(got.score, expected.score, rtol=0, atol=1e-5)


def test_leftovers_of_killed_processes_are_removed(tmp_path):
    """A process killed (kill -9) inside atomic_path leaves its temporary folder; the next write
    in that folder removes it. Temporary paths of live processes and of other hosts stay."""
    killed = subprocess.Popen(
        [sys.executable, "-c", "import os, signal\n"
         "from crossvariety.runs import atomic_path\n"
         f"with atomic_path({str(tmp_path / 'index')!r}) as tmp:\n"
         "    tmp.mkdir()\n"
         "    (tmp / 'vecs.f4').write_bytes(b'half')\n"
         "    os.kill(os.getpid(), signal.SIGKILL)\n"],
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert killed.wait(timeout=300) == -signal.SIGKILL
    [leftover] = tmp_path.glob(".partial-*")
    assert (leftover / "vecs.f4").is_file() and str(killed.pid) in leftover.name
    runs.write_text(tmp_path / "table.md", "| a |\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]

    assert leftover.name == f".partial-{runs.HOST}@{killed.pid}.index"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kept = [tmp_path / f".partial-{runs.HOST}@{alive.pid}.run.res.gz",  # being written
                tmp_path / f".partial-elsewhere.example.org@{killed.pid}.run.res.gz",
                tmp_path / "table.md"]
        for path in kept[:2]:
            path.write_text("")
        (tmp_path / f".partial-{killed.pid}.table.md").write_text("")  # from before the host
        runs.write_text(tmp_path / "table.md", "| b |\n")
        assert sorted(tmp_path.iterdir()) == sorted(kept)
    finally:
        alive.kill()
        alive.wait()


def test_a_chunk_claimed_by_a_job_that_stops_is_encoded_after_it(tmp_path, tiny_xlmr,
                                                                  one_process_index):
    """A job finds chunk 3 claimed by another (here: its claim file locked by the test), encodes
    the other chunks and waits for the claim; when the other job stops without saving the
    chunk, this one encodes it and builds the whole index."""
    import fcntl
    index = tmp_path / "indexes" / "index"
    parts = chunks.parts_dir(index)
    parts.mkdir(parents=True)
    other = os.open(parts / "claim-000003", os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX)
    events, last_chunk_done = [], threading.Event()

    def other_job_stops():
        last_chunk_done.wait(timeout=300)
        time.sleep(0.5)
        events.append("other job stopped")
        os.close(other)
    threading.Thread(target=other_job_stops).start()

    encoder = dense.BgeM3Encoder(str(tiny_xlmr), max_length=64, verbose=False)
    original = encoder.encode

    def encode(texts, desc=""):
        events.append(desc)
        if desc == "chunk 9":
            last_chunk_done.set()
        return original(texts)
    encoder.encode = encode
    docs = pd.DataFrame({"docno": [f"d{i}" for i in range(len(PASSAGES))], "text": PASSAGES})
    assert dense.build_index(lambda: docs.to_dict("records"), encoder, index,
                             chunk_docs=CHUNK_DOCS)
    assert events == [f"chunk {k}" for k in (0, 1, 2, 4, 5, 6, 7, 8, 9)] + \
        ["other job stopped", "chunk 3"]
    assert_same_index(index, one_process_index)
