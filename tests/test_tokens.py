"""Tokenisation as flat arrays (crossvariety.neural.tokens), its worker processes, and the batches built
from it (crossvariety.neural.batching)."""
import numpy as np
import pytest
import torch

from conftest import FR_PASSAGES
from crossvariety.neural import batching, tokens
from crossvariety.neural.random_models import synthetic_passages
from test_rerank import HOSTILE_TEXTS

TEXTS = HOSTILE_TEXTS + list(FR_PASSAGES.values()) + synthetic_passages(300, seed=5) + [""]


@pytest.fixture(scope="module")
def xlmr_tokenizer(tiny_xlmr):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_xlmr)


@pytest.fixture(scope="module")
def mt5_tokenizer(tiny_mt5):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_mt5)


def test_flat_tokenizer_equals_transformers(xlmr_tokenizer, mt5_tokenizer):
    for max_length in (8, 128, 1024):
        expected = xlmr_tokenizer(TEXTS, truncation=True, max_length=max_length)["input_ids"]
        flat = tokens.FlatTokenizer(xlmr_tokenizer, max_length)(TEXTS)
        assert flat.ids.dtype == np.int32 and flat.lengths.dtype == np.int64
        assert flat.lists() == expected
        assert flat.lengths.max() == min(max_length, max(map(len, expected)))
    # the re-ranker's prompts: the text truncated so that "Relevant:</s>" always fits
    from crossvariety.rerank.monot5 import MAX_LENGTH, prompt_ids, prompt_tokenizer
    pairs = [("quin és el riu més llarg", text) for text in TEXTS]
    prompt = prompt_ids(mt5_tokenizer)
    expected = [ids + prompt for ids in mt5_tokenizer(
        [f"Query: {q} Document: {d}" for q, d in pairs], add_special_tokens=False,
        truncation=True, max_length=MAX_LENGTH - len(prompt))["input_ids"]]
    ours = prompt_tokenizer(mt5_tokenizer)(pairs)
    assert ours.lists() == expected
    assert ours.lengths.max() == MAX_LENGTH  # the long texts were truncated


def test_workers_equal_the_thread_and_report_failures(xlmr_tokenizer, monkeypatch):
    tokenize = tokens.FlatTokenizer(xlmr_tokenizer, 64)
    expected = tokenize(TEXTS)
    with tokens.Workers(tokenize, 2) as workers:
        got = workers(TEXTS)
        assert got.lists() == expected.lists()
        # a chunked job: chunks spread over both workers, yielded in order
        monkeypatch.setattr(batching, "WORKERS_MIN_ITEMS", 10)
        chunked = batching.ChunkTokenizer(tokenize, chunk=40, workers=2)
        chunked._pool = workers
        items = TEXTS * 3
        parts = list(chunked.chunks(items))
        assert [offset for offset, _ in parts] == [s for s, _ in batching.chunk_bounds(len(items), 40)]
        assert sum((part.lists() for _, part in parts), []) == tokenize(items).lists()
        # bad input: the worker's traceback, and the worker serves the next call
        with pytest.raises(tokens.WorkerError, match="TypeError"):
            workers([None])
        assert workers(TEXTS[:3]).lists() == expected.lists()[:3]
        # a worker that dies: an error naming it, not a hang
        for proc in workers.procs:
            proc.kill()
            proc.wait()
        with pytest.raises(tokens.WorkerError, match="worker process ended"):
            workers(TEXTS[:3])
    assert workers.procs == []


def test_worker_count_setting():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert batching.worker_count("auto", cpu) == 0
    assert 1 <= batching.worker_count("auto", gpu) <= 4
    assert batching.worker_count("3", cpu) == 3
    with pytest.raises(ValueError, match="--tokenizer-workers 'many'"):
        batching.worker_count("many", cpu)


def test_padded_batches_hold_every_input_once():
    rng = np.random.default_rng(0)
    lists = [list(rng.integers(5, 100, size=n)) for n in rng.integers(1, 60, size=200)]
    flat = tokens.from_lists(lists)
    seen = []
    for batch in batching.padded_batches(flat, 0, 256, torch.device("cpu"), multiple=8):
        assert batch.input_ids.numel() <= max(256, batch.input_ids.shape[1])
        assert batch.input_ids.shape[1] % 8 == 0
        for row, i in enumerate(batch.positions.tolist()):
            n = len(lists[i])
            assert batch.lengths[row] == n and batch.attention_mask[row].sum() == n
            assert batch.input_ids[row, :n].tolist() == lists[i]
            assert (batch.input_ids[row, n:] == 0).all()
        seen += batch.positions.tolist()
    assert sorted(seen) == list(range(200))
