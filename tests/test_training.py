"""Fine-tuning on tiny local models, on CPU: the loss falls on a learnable toy task, the
output loads back into the re-ranker / retrieval scripts, and a killed run resumes exactly."""
import json
import random
import re

import numpy as np
import torch

from conftest import run_script

WORDS = ["eau", "tour", "miel", "diabète", "marathon", "café", "loire", "chocolat"]


def toy_examples(n, seed):
    """Relevant passages carry the word 'oui', irrelevant ones 'non': learnable in a few steps."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        w = rng.choice(WORDS)
        filler = " ".join(rng.choice(WORDS) for _ in range(6))
        examples.append({"query": f"{w} {rng.choice(WORDS)}",
                         "pos": [f"oui {filler} oui"], "neg": [f"non {filler} non"]})
    return examples


def write_jsonl(path, examples):
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))
    return path


def losses(stderr):
    return [float(x) for x in re.findall(r"loss (\d+\.\d+)", stderr)]


def test_finetune_mt5_learns_and_loads_back(workdir, tiny_mt5):
    tmp_path = workdir
    train = write_jsonl(tmp_path / "toy.jsonl", toy_examples(200, seed=0))
    out = tmp_path / "mt5-toy"
    proc = run_script("finetune_mt5.py", "--train", train, "--model", tiny_mt5, "--out", out,
                      "--batch-size", "16", "--learning-rate", "3e-3", "--max-steps", "40",
                      "--log-every", "5", cwd=tmp_path)
    curve = losses(proc.stderr)
    assert len(curve) == 8 and curve[-1] < 0.5 * curve[0], curve
    assert (out / "training.json").is_file() and not (tmp_path / "mt5-toy.checkpoints").exists()

    from crossvariety.rerank import MonoT5ReRanker
    reranker = MonoT5ReRanker(str(out), verbose=False)
    held_out = toy_examples(30, seed=1)
    pos = reranker.score([e["query"] for e in held_out], [e["pos"][0] for e in held_out])
    neg = reranker.score([e["query"] for e in held_out], [e["neg"][0] for e in held_out])
    assert (pos > neg).mean() >= 0.9
    # and through the scripts: BM25 >> the fine-tuned mT5
    proc = run_script("run_mmarco.py", "--pairs", "ca-fr", "--rerank", out, "--evaluate",
                      cwd=workdir)
    assert "bm25 >> mt5-toy" in proc.stdout


def test_killed_mt5_run_resumes_exactly(tmp_path, tiny_mt5):
    train = write_jsonl(tmp_path / "toy.jsonl", toy_examples(60, seed=2))
    common = ["--train", train, "--model", tiny_mt5, "--batch-size", "8", "--grad-accum", "2",
              "--max-steps", "6", "--learning-rate", "1e-3", "--log-every", "1"]
    run_script("finetune_mt5.py", *common, "--out", tmp_path / "straight", cwd=tmp_path)
    proc = run_script("finetune_mt5.py", *common, "--out", tmp_path / "killed", "--stop-after", "4",
                      cwd=tmp_path)
    assert "stopping after 4 steps" in proc.stderr
    assert [p.name for p in (tmp_path / "killed.checkpoints").iterdir()] == ["step-4"]
    assert not (tmp_path / "killed").exists()
    proc = run_script("finetune_mt5.py", *common, "--out", tmp_path / "killed", cwd=tmp_path)
    assert "resuming from" in proc.stderr and "(step 4 of 6)" in proc.stderr

    from transformers import MT5ForConditionalGeneration
    a = MT5ForConditionalGeneration.from_pretrained(tmp_path / "straight").state_dict()
    b = MT5ForConditionalGeneration.from_pretrained(tmp_path / "killed").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = MT5ForConditionalGeneration.from_pretrained(tiny_mt5).state_dict()
    assert not all(torch.equal(a[k], start[k]) for k in a)  # it did train


def test_finetune_mt5_rejects_bad_data(tmp_path, tiny_mt5):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n{"query": "q", "pos": []}\n')
    proc = run_script("finetune_mt5.py", "--train", bad, "--model", tiny_mt5, cwd=tmp_path,
                      check=False)
    assert proc.returncode != 0 and "bad.jsonl:2: a training example is" in proc.stderr


def test_finetune_bgem3_learns_and_loads_back(workdir, tiny_xlmr):
    from crossvariety.random_models import synthetic_passages
    passages = synthetic_passages(64, seed=5)
    examples = [{"query": " ".join(p.split()[:4]), "pos": [p], "neg": [passages[(i + 32) % 64]]}
                for i, p in enumerate(passages)]  # the query is the passage's first words
    train = write_jsonl(workdir / "toy.jsonl", examples)
    out = workdir / "bge-toy"
    proc = run_script("finetune_bgem3.py", "--train", train, "--model", tiny_xlmr, "--out", out,
                      "--learning-rate", "1e-4", "--epochs", "6", "--logging-steps", "4",
                      cwd=workdir)
    curve = [float(x) for x in re.findall(r"'loss': ([\d.]+)", proc.stdout + proc.stderr)]
    assert len(curve) >= 10 and np.mean(curve[-3:]) < np.mean(curve[:3]), curve
    assert (out / "config.json").is_file() and "negatives_cross_device" in proc.stderr

    # the output loads by path in the encoder of index_bgem3.py and run_mmarco.py (whose
    # scripts test_dense.py runs end to end with a model path)
    from crossvariety import dense
    vectors = dense.BgeM3Encoder(str(out), max_length=128, verbose=False).encode(passages)
    assert vectors.shape == (64, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    proc = run_script("finetune_bgem3.py", "--train", train, "--model", tiny_xlmr, "--out", out,
                      cwd=workdir)
    assert "nothing to do" in proc.stderr
