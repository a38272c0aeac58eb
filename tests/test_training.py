"""Fine-tuning on tiny local models, on CPU: the loss falls on a learnable toy task, the
output loads back into the re-ranker / retrieval scripts, and a killed run resumes exactly."""
import json
import random
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, run_script

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


def test_finetune_mt5_learns_resumes_exactly_and_loads_back(tmp_path, tiny_mt5):
    train = write_jsonl(tmp_path / "toy.jsonl", toy_examples(200, seed=0))
    common = ["--train", train, "--model", tiny_mt5, "--batch-size", "16", "--grad-accum", "2",
              "--learning-rate", "3e-3", "--max-steps", "40", "--log-every", "5"]
    out = tmp_path / "mt5-toy"
    proc = run_script("finetune_mt5.py", *common, "--out", out, cwd=tmp_path)
    curve = losses(proc.stderr)
    assert len(curve) == 8 and curve[-1] < 0.5 * curve[0], curve
    assert (out / "training.json").is_file() and not (tmp_path / "mt5-toy.checkpoints").exists()

    proc = run_script("finetune_mt5.py", *common, "--out", tmp_path / "killed", "--stop-after",
                      "24", "--save-every", "5", cwd=tmp_path)
    assert "stopping after 24 steps" in proc.stderr
    # saved at steps 5, 10, 15, 20 and 24 (the stop); the last two kept
    assert sorted(p.name for p in (tmp_path / "killed.checkpoints").iterdir()) == \
        ["step-20", "step-24"]
    assert not (tmp_path / "killed").exists()
    proc = run_script("finetune_mt5.py", *common, "--out", tmp_path / "killed", cwd=tmp_path)
    assert "resuming from" in proc.stderr and "(step 24 of 40)" in proc.stderr
    from transformers import MT5ForConditionalGeneration
    a = MT5ForConditionalGeneration.from_pretrained(out).state_dict()
    b = MT5ForConditionalGeneration.from_pretrained(tmp_path / "killed").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    from crossvariety.rerank.monot5 import MonoT5ReRanker
    reranker = MonoT5ReRanker(str(out), verbose=False)
    held_out = toy_examples(30, seed=1)
    pos = reranker.score([e["query"] for e in held_out], [e["pos"][0] for e in held_out])
    neg = reranker.score([e["query"] for e in held_out], [e["neg"][0] for e in held_out])
    assert (pos > neg).mean() >= 0.9  # (test_rerank.py runs the scripts with a model path)


def test_finetune_mt5_triples_overwrite_and_nothing_to_do(tmp_path, tiny_mt5):
    """--triples adds a yes and a no pair per line (a malformed line is an error naming it); a
    finished output is left alone unless --overwrite."""
    train = write_jsonl(tmp_path / "two.jsonl", toy_examples(2, seed=4))
    triples = tmp_path / "triples.tsv"
    triples.write_text("eau tour\toui eau oui\tnon eau non\nmiel\toui miel\tnon miel\n")
    common = ["--train", train, "--triples", triples, "--model", tiny_mt5, "--batch-size", "4",
              "--max-steps", "1", "--out", tmp_path / "out"]
    proc = run_script("finetune_mt5.py", *common, cwd=tmp_path)
    assert f"8 training pairs (4 yes, 4 no) from {train} and {triples}" in proc.stderr
    info = tmp_path / "out" / "training.json"
    assert json.loads(info.read_text())["pairs"] == 8
    written = info.stat().st_mtime_ns
    proc = run_script("finetune_mt5.py", *common, cwd=tmp_path)
    assert "exists; nothing to do" in proc.stderr and info.stat().st_mtime_ns == written
    proc = run_script("finetune_mt5.py", *common, "--overwrite", cwd=tmp_path)
    assert "training" in proc.stderr and info.stat().st_mtime_ns != written

    triples.write_text("eau tour\toui eau oui\tnon eau non\nmiel\toui miel\n")
    proc = run_script("finetune_mt5.py", *common[:-1], tmp_path / "bad", cwd=tmp_path,
                      check=False)
    assert proc.returncode == 1 and not (tmp_path / "bad").exists()
    assert proc.stderr.strip().splitlines()[-1] == (
        f"finetune_mt5.py: {triples}:2: a triple is query<TAB>positive<TAB>negative "
        "(found 2 fields)")


def without_dropout(model_dir, tmp_path):
    """A copy of a tiny model with dropout off: one step is then deterministic on both sides."""
    import shutil
    from transformers import AutoConfig
    copy = shutil.copytree(model_dir, tmp_path / f"{model_dir.name}-no-dropout")
    config = AutoConfig.from_pretrained(copy)
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout_rate"):
        if hasattr(config, key):
            setattr(config, key, 0.0)
    config.save_pretrained(copy)
    return copy


def assert_same_step(ours, reference, start, skip=()):
    """Parameters after one step agree within 1e-5 of each tensor's scale; the step moved them."""
    assert ours.keys() == reference.keys()
    for key in ours:
        if any(s in key for s in skip):
            continue
        scale = reference[key].abs().max().item()
        assert (ours[key] - reference[key]).abs().max().item() <= 1e-5 * scale, key
    assert sum(not torch.equal(ours[k], start[k]) for k in ours) >= 0.9 * len(ours)


def test_bgem3_step_equals_flagembedding_trainer_step(tmp_path, tiny_xlmr):
    """One step of finetune_bgem3.py = one step of FlagEmbedding's m3 trainer (HF Trainer), fp32
    on a CPU, from the same weights and batch: loss within 1e-5, parameters within 1e-5 of each
    tensor's scale."""
    from transformers import AutoModel, HfArgumentParser
    from FlagEmbedding.finetune.embedder.encoder_only.m3 import (
        EncoderOnlyEmbedderM3DataArguments, EncoderOnlyEmbedderM3ModelArguments,
        EncoderOnlyEmbedderM3Runner, EncoderOnlyEmbedderM3TrainingArguments)
    from crossvariety.neural.random_models import synthetic_passages
    model = without_dropout(tiny_xlmr, tmp_path)
    passages = synthetic_passages(16, seed=5)
    train = write_jsonl(tmp_path / "eight.jsonl", [
        {"query": " ".join(p.split()[:4]), "pos": [p], "neg": [passages[8 + i]]}
        for i, p in enumerate(passages[:8])])  # one batch: the order within it does not matter
    run_script("finetune_bgem3.py", "--train", train, "--model", model, "--out", tmp_path / "ours",
               "--learning-rate", "1e-3", "--max-steps", "1", cwd=tmp_path)
    ours_loss = json.loads((tmp_path / "ours" / "training.json").read_text())["last_loss"]

    # the reference command's arguments; negatives_cross_device needs torchrun, and with one
    # process its gather is the identity
    arguments = HfArgumentParser((EncoderOnlyEmbedderM3ModelArguments,
                                  EncoderOnlyEmbedderM3DataArguments,
                                  EncoderOnlyEmbedderM3TrainingArguments))
    runner = EncoderOnlyEmbedderM3Runner(*arguments.parse_args_into_dataclasses(args=[
        "--model_name_or_path", str(model), "--train_data", str(train),
        "--output_dir", str(tmp_path / "reference"), "--learning_rate", "1e-3", "--max_steps", "1",
        "--per_device_train_batch_size", "8", "--train_group_size", "2", "--temperature", "0.02",
        "--query_max_len", "64", "--passage_max_len", "256",
        "--query_instruction_for_retrieval", "", "--normalize_embeddings", "True",
        "--sentence_pooling_method", "cls", "--save_strategy", "no", "--report_to", "none",
        "--use_cpu", "True"]))
    reference_loss = runner.trainer.train().training_loss
    assert abs(ours_loss - reference_loss) <= 1e-5 * reference_loss, (ours_loss, reference_loss)
    reference = {k: v.detach() for k, v in runner.model.model.state_dict().items()
                 if not k.startswith("pooler.")}
    start = AutoModel.from_pretrained(model, add_pooling_layer=False).state_dict()
    ours = AutoModel.from_pretrained(tmp_path / "ours", add_pooling_layer=False).state_dict()
    # a key bias adds the same amount to every score of a query: its exact gradient is 0, and
    # Adam turns the float noise in its place into steps of up to the learning rate
    assert_same_step(ours, reference, start, skip=("attention.self.key.bias",))

    # two processes of 4 queries with cross-device negatives score the same batch of 8: the
    # same loss (their gradients are averaged over the processes, as in FlagEmbedding's trainer)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    REPO / "finetune_bgem3.py", "--train", train, "--model", model,
                    "--out", tmp_path / "two", "--batch-size", "4", "--learning-rate", "1e-3",
                    "--max-steps", "1"], cwd=tmp_path, check=True, capture_output=True)
    info = json.loads((tmp_path / "two" / "training.json").read_text())
    assert info["processes"] == 2
    assert abs(info["last_loss"] - reference_loss) <= 1e-5 * reference_loss


def test_mt5_step_equals_original_loop_step(tmp_path, tiny_mt5):
    """One step of finetune_mt5.py --batch-size 4 = one step of the original loop (tokenise the
    batch, pad to its longest, AdamW), fp32 on a CPU: loss within 1e-5, parameters within 1e-5
    of each tensor's scale."""
    from transformers import AutoTokenizer, MT5ForConditionalGeneration
    model = without_dropout(tiny_mt5, tmp_path)
    examples = toy_examples(2, seed=4)  # 2 x (positive, negative): one batch of 4 pairs
    train = write_jsonl(tmp_path / "two.jsonl", examples)
    run_script("finetune_mt5.py", "--train", train, "--model", model, "--out", tmp_path / "ours",
               "--batch-size", "4", "--learning-rate", "1e-3", "--max-steps", "1", cwd=tmp_path)
    ours_loss = json.loads((tmp_path / "ours" / "training.json").read_text())["last_loss"]

    tokenizer = AutoTokenizer.from_pretrained(model)
    reference = MT5ForConditionalGeneration.from_pretrained(model).train()
    batch = [(e["query"], d, label) for e in examples
             for d, label in ((e["pos"][0], "yes"), (e["neg"][0], "no"))]
    inputs = tokenizer([f"Query: {q} Document: {d} Relevant:" for q, d, _ in batch],
                       padding=True, truncation=True, max_length=512, return_tensors="pt")
    labels = tokenizer([label for _, _, label in batch], padding=True,
                       return_tensors="pt").input_ids
    assert labels.shape == (4, 2)  # yes / no and </s>, as the re-ranker reads them
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3)
    loss = reference(**inputs, labels=labels).loss
    loss.backward()
    optimizer.step()
    assert abs(ours_loss - loss.item()) <= 1e-5 * loss.item(), (ours_loss, loss.item())
    start = MT5ForConditionalGeneration.from_pretrained(model).state_dict()
    ours = MT5ForConditionalGeneration.from_pretrained(tmp_path / "ours").state_dict()
    assert_same_step(ours, reference.state_dict(), start)


def test_padded_and_compiled_steps_equal_plain_steps(tmp_path, tiny_xlmr, tiny_mt5):
    """The GPU path pads inputs to a multiple of 64 tokens and compiles the models whole
    (fullgraph: a graph break fails here, not on the GPU). On a CPU the same capture runs with
    the aot_eager backend: loss and gradients equal those of the plain, unpadded step (dropout
    off: padding changes which random numbers a dropout mask gets, not their distribution)."""
    from transformers import AutoModel, MT5ForConditionalGeneration
    from crossvariety.neural import training
    from crossvariety.errors import UsageError
    cpu = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    xlmr, mt5 = without_dropout(tiny_xlmr, tmp_path), without_dropout(tiny_mt5, tmp_path)

    def xlmr_loss(model, ids, mask):
        cls = model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        return torch.nn.functional.normalize(cls, dim=-1).sum(0).pow(2).sum()

    def mt5_loss(model, ids, mask):
        return model(input_ids=ids, attention_mask=mask, labels=ids[:, :2].contiguous(),
                     use_cache=False).loss

    # (no pooler: compiled, the parameters no loss reaches get zero gradients, not None; the
    # trainer freezes it)
    for load, loss_of in ((lambda: AutoModel.from_pretrained(xlmr, add_pooling_layer=False),
                           xlmr_loss),
                          (lambda: MT5ForConditionalGeneration.from_pretrained(mt5), mt5_loss)):
        length = training.padded_length(40, 256)
        ids = torch.randint(5, 150, (4, length), generator=generator)
        mask = torch.ones_like(ids)
        mask[:, 40:] = 0
        mask[1, 17:] = 0
        results = []
        for compiled, width in ((False, 40), (False, length), (True, length)):
            model = load().train()
            if compiled:
                assert not training.compile_module(model, "on", cpu, backend="aot_eager")
            loss = loss_of(model, ids[:, :width], mask[:, :width])
            loss.backward()
            results.append((loss.item(), {k: p.grad for k, p in model.named_parameters()
                                          if p.grad is not None}))
        plain_loss, plain = results[0]
        for loss, grads in results[1:]:
            assert abs(loss - plain_loss) <= 1e-5 * abs(plain_loss)
            assert grads.keys() == plain.keys()
            for key in plain:  # within float noise: 1e-6, or 1e-5 of the tensor's scale
                noise = max(1e-6, 1e-5 * plain[key].abs().max().item())
                torch.testing.assert_close(grads[key], plain[key], rtol=1e-4, atol=noise,
                                           msg=lambda m: f"{key}: {m}")
    assert training.padded_length(65, 256) == 128 and training.padded_length(300, 256) == 256
    assert training.padded_length(65, 256, multiple=1) == 65
    assert not training.compile_module(None, "auto", cpu)  # auto: only on a GPU
    with pytest.raises(UsageError, match="--compile 'yes'"):
        training.compile_module(None, "yes", cpu)


def test_finetune_bgem3_learns_resumes_and_loads_back(workdir, tiny_xlmr):
    from crossvariety.families import dense
    from crossvariety.neural.random_models import synthetic_passages
    passages = synthetic_passages(16, seed=5)
    # one batch of examples, seen 12 times: enough to show that it fits what it is trained on
    examples = [{"query": " ".join(p.split()[:4]), "pos": [p], "neg": [passages[8 + i]]}
                for i, p in enumerate(passages[:8])]  # the query is the passage's first words
    train = write_jsonl(workdir / "toy.jsonl", examples)
    common = ["--train", train, "--model", tiny_xlmr, "--learning-rate", "1e-2",
              "--max-steps", "12", "--log-every", "4"]
    out = workdir / "bge-toy"
    proc = run_script("finetune_bgem3.py", *common, "--out", out, cwd=workdir)
    assert len(losses(proc.stderr)) == 3
    assert (out / "config.json").is_file() and not (workdir / "bge-toy.checkpoints").exists()

    def loss_of(model):
        """The batch's contrastive loss (in-batch negatives, temperature 0.02), no dropout."""
        encoder = dense.BgeM3Encoder(str(model), max_length=128, verbose=False)
        q = torch.from_numpy(encoder.encode([e["query"] for e in examples]))
        p = torch.from_numpy(encoder.encode([e["pos"][0] for e in examples] +
                                            [e["neg"][0] for e in examples]))
        return torch.nn.functional.cross_entropy(q @ p.T / 0.02, torch.arange(8)).item()
    # it learned: the same value on every CPU run; measured 5.92 -> 2.70
    assert loss_of(out) < 0.6 * loss_of(tiny_xlmr)

    proc = run_script("finetune_bgem3.py", *common, "--out", workdir / "killed", "--stop-after",
                      "5", cwd=workdir)
    assert "stopping after 5 steps" in proc.stderr and not (workdir / "killed").exists()
    proc = run_script("finetune_bgem3.py", *common, "--out", workdir / "killed", cwd=workdir)
    assert "(step 5 of 12)" in proc.stderr
    from transformers import AutoModel
    a = AutoModel.from_pretrained(out, add_pooling_layer=False).state_dict()
    b = AutoModel.from_pretrained(workdir / "killed", add_pooling_layer=False).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the output loads by path in the encoder of index_bgem3.py and run_mmarco.py (whose
    # scripts test_dense.py runs end to end with a model path)
    vectors = dense.BgeM3Encoder(str(out), max_length=128, verbose=False).encode(passages)
    assert vectors.shape == (16, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    proc = run_script("finetune_bgem3.py", *common, "--out", out, cwd=workdir)
    assert "nothing to do" in proc.stderr


@pytest.mark.parametrize("script, model, more", [
    ("finetune_mt5.py", "tiny_mt5", ["--batch-size", "4"]),
    ("finetune_bgem3.py", "tiny_xlmr", ["--batch-size", "2"]),
    ("finetune_colbertxm.py", "tiny_colbert_xm", ["--batch-size", "2", "--language", "fr",
                                                  "--warmup-steps", "0"]),
])
def test_trainers_take_dtype_and_record_it(tmp_path, request, script, model, more):
    """One name for the precision in every script: --dtype (auto, bf16, fp32); fp8 is refused
    in training (inference only), --precision is gone; the dtype used is in training.json."""
    train = write_jsonl(tmp_path / "toy.jsonl", toy_examples(4, seed=2))
    common = ["--train", train, "--model", request.getfixturevalue(model), *more,
              "--max-steps", "1", "--out", tmp_path / "out"]
    proc = run_script(script, *common, "--dtype", "fp8", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f"{script}: --dtype fp8 is for inference only (index_*.py, rerank_mt5.py, run_*.py); "
        "train with auto, bf16 or fp32")
    proc = run_script(script, *common, "--dtype", "fp16", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and \
        "--dtype 'fp16': choose auto, bf16 or fp32" in proc.stderr.splitlines()[-1]
    proc = run_script(script, *common, "--precision", "fp32", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "unrecognized arguments: --precision" in proc.stderr
    assert not (tmp_path / "out").exists()
    run_script(script, *common, "--dtype", "fp32", cwd=tmp_path)
    info = json.loads((tmp_path / "out" / "training.json").read_text())
    assert info["dtype"] == "fp32" and "precision" not in info
