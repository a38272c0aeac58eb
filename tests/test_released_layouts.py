"""The released checkpoints in the file layouts they are published in, served offline from a
fake Hugging Face cache: each loads and scores as the same weights in a plain folder.

The layouts (crossvariety.neural.random_models.PUBLISHED_LAYOUTS) and the listings below are those of
the repositories' "Files and versions" pages: the paper's fine-tuned mT5 re-rankers ship no
tokenizer (their base model's, unicamp-dl/mt5-base-mmarco-v2, is used), its BGE-M3 ones are
sentence-transformers folders with duplicate files and a pickle, BAAI/bge-m3 holds heads and
ONNX weights that are never read.
"""
import gzip
import json
import logging
import re
from types import SimpleNamespace

import huggingface_hub
import numpy as np
import pytest

from conftest import CA_DEV_QUERIES, FR_PASSAGES, fake_hub, run_script
from crossvariety import models
from crossvariety.errors import UserError
from crossvariety.neural.random_models import NEVER_READ, PUBLISHED_LAYOUTS, published_files

MT5_LT = "andreaschari/mt5-unicamp-lt-cafr"
MT5_BASE = "unicamp-dl/mt5-base-mmarco-v2"
QUERIES = list(CA_DEV_QUERIES.values())
DOCS = list(FR_PASSAGES.values())[:4]

# Sizes as the hub pages show them (bytes, rounded as shown there).
LISTINGS = {
    MT5_LT: {".gitattributes": 1560, "README.md": 664, "config.json": 841,
             "generation_config.json": 142, "model.safetensors": 2_330_000_000},
    MT5_BASE: {".gitattributes": 1180, "README.md": 1500, "config.json": 703,
               "pytorch_model.bin": 2_330_000_000, "special_tokens_map.json": 65,
               "spiece.model": 4_310_000, "tokenizer_config.json": 432},
    "andreaschari/bge-m3-lt-cafr": {
        ".gitattributes": 1560, "README.md": 990, "1_Pooling/config.json": 191,
        "config.json": 750, "config_sentence_transformers.json": 203,
        "model copy.safetensors": 2_270_000_000, "model.safetensors": 2_270_000_000,
        "modules.json": 349, "sentence_bert_config.json": 54,
        "sentencepiece.bpe copy.model": 5_070_000, "sentencepiece.bpe.model": 5_070_000,
        "special_tokens_map.json": 964, "tokenizer.json": 17_100_000,
        "tokenizer_config.json": 1170},
    "andreaschari/bge-m3-lt-afdt": {
        ".gitattributes": 1560, "README.md": 1270, "1_Pooling/config.json": 191,
        "config.json": 732, "config_sentence_transformers.json": 203,
        "model.safetensors": 2_270_000_000, "modules.json": 349,
        "sentence_bert_config.json": 54, "sentencepiece.bpe.model": 5_070_000,
        "special_tokens_map.json": 964, "tokenizer.json": 17_100_000,
        "tokenizer_config.json": 1170, "training_args.bin": 5000},
    "andreaschari/colbert-xm-lt-cafr": {
        ".gitattributes": 1610, "README.md": 1030, "artifact.metadata": 2310,
        "config.json": 1920, "model.safetensors": 3_410_000_000, "special_tokens_map.json": 280,
        "tokenizer.json": 17_100_000, "tokenizer_config.json": 1180},
}
TOKENIZER_OF_MT5 = ["config.json", "special_tokens_map.json", "spiece.model",
                    "tokenizer_config.json"]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache, the one huggingface_hub uses in this process (offline)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def publish(hub, repo, plain, layout, without=()):
    files = {k: v for k, v in published_files(plain, layout).items() if k not in without}
    fake_hub(hub, repo, files, "model")
    return files


def publish_mt5_lt(hub, tiny_mt5, base_tokenizer=True):
    """The LT checkpoint as published (three files) and, if asked, only the tokenizer files of
    its base model, as `huggingface-cli download unicamp-dl/mt5-base-mmarco-v2 <files>` leaves
    them."""
    files = publish(hub, MT5_LT, tiny_mt5, "mt5-lt")
    assert sorted(files) == ["README.md", "config.json", "generation_config.json",
                             "model.safetensors"]
    if base_tokenizer:
        publish(hub, MT5_BASE, tiny_mt5, "mt5-base-mmarco", without=["pytorch_model.bin"])


# ----------------------------------------------------------------------------- what is fetched

@pytest.mark.parametrize("repo, family, fetched", [
    (MT5_LT, "mt5", ["config.json", "generation_config.json", "model.safetensors"]),
    (MT5_BASE, "mt5", ["config.json", "pytorch_model.bin", "special_tokens_map.json",
                       "spiece.model", "tokenizer_config.json"]),
    (MT5_BASE, "tokenizer", TOKENIZER_OF_MT5),
    ("andreaschari/bge-m3-lt-cafr", "bge-m3",
     ["config.json", "model.safetensors", "sentencepiece.bpe.model", "special_tokens_map.json",
      "tokenizer.json", "tokenizer_config.json"]),
    ("andreaschari/bge-m3-lt-afdt", "bge-m3",
     ["config.json", "model.safetensors", "sentencepiece.bpe.model", "special_tokens_map.json",
      "tokenizer.json", "tokenizer_config.json"]),
    ("andreaschari/colbert-xm-lt-cafr", "colbert-xm",
     ["artifact.metadata", "config.json", "model.safetensors", "special_tokens_map.json",
      "tokenizer.json", "tokenizer_config.json"]),
])
def test_only_the_loaded_files_of_the_published_repos_are_selected(repo, family, fetched):
    assert models.select_files(LISTINGS[repo], family) == (fetched, [])


def test_a_repo_with_safetensors_and_pickled_weights_gives_one_copy():
    listing = dict.fromkeys(PUBLISHED_LAYOUTS["bge-m3"], 1)
    selected, missing = models.select_files({**listing, "model.safetensors": 1}, "bge-m3")
    assert missing == [] and "model.safetensors" in selected
    assert not {"pytorch_model.bin", "colbert_linear.pt", "sparse_linear.pt", "onnx/model.onnx",
                "onnx/model.onnx_data", "modules.json"} & set(selected)
    assert "pytorch_model.bin" in models.select_files(listing, "bge-m3")[0]


def test_online_fetch_downloads_only_what_is_loaded_and_says_how_much(hub, tiny_xlmr, monkeypatch,
                                                                      caplog):
    """The hub answers with the real listing of andreaschari/bge-m3-lt-cafr; the download is
    asked for the six loaded files only, not the 2.27 GB copy."""
    repo = "andreaschari/bge-m3-lt-cafr"
    publish(hub, repo, tiny_xlmr, "bge-m3-lt-cafr")
    listing = LISTINGS[repo]
    monkeypatch.setattr(models, "hub_unreachable", lambda: None)  # the hub answers the probe
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo_id, **kw: (
        SimpleNamespace(siblings=[SimpleNamespace(rfilename=f, size=s)
                                  for f, s in listing.items()])))
    asked = []
    download = huggingface_hub.snapshot_download

    def recording_download(repo_id, **options):
        asked.append(options["allow_patterns"])
        return download(repo_id, cache_dir=options["cache_dir"], local_files_only=True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", recording_download)
    with caplog.at_level(logging.INFO, logger="crossvariety.models"):
        folder = models.fetch("bge-m3-lt-cafr", "bge-m3")
    assert asked == [models.select_files(listing, "bge-m3")[0]]
    assert "model copy.safetensors" not in asked[0] and (folder / "config.json").is_file()
    message = caplog.text
    assert "fetching config.json (750 B), model.safetensors (2.27 GB)" in message
    assert "(2.29 GB in all)" in message
    assert "not fetched: 1_Pooling/config.json (191 B)" in message
    assert "model copy.safetensors (2.27 GB)" in message.split("not fetched:")[1]


# ----------------------------------------------------------------------------- mT5

def test_mt5_lt_as_published_takes_its_base_tokenizer_and_scores_as_plain(hub, tiny_mt5):
    from crossvariety.rerank.monot5 import MonoT5ReRanker
    publish_mt5_lt(hub, tiny_mt5)
    published = MonoT5ReRanker("mt5-lt-cafr", verbose=False, compile="off")
    plain = MonoT5ReRanker(str(tiny_mt5), verbose=False, compile="off")
    assert published.tokenizer_name == MT5_BASE and plain.tokenizer_name == str(tiny_mt5)
    assert models.tokenizer_used("mt5-lt-cafr", "mt5") == MT5_BASE
    scores = published.score(QUERIES[:1] * 4, DOCS)
    assert np.array_equal(scores, plain.score(QUERIES[:1] * 4, DOCS))
    assert scores.std() > 1e-4


def test_mt5_base_as_published_scores_as_plain(hub, tiny_mt5):
    """unicamp-dl/mt5-base-mmarco-v2: pytorch_model.bin and a tokenizer without tokenizer.json."""
    from crossvariety.rerank.monot5 import MonoT5ReRanker
    publish(hub, MT5_BASE, tiny_mt5, "mt5-base-mmarco")
    published = MonoT5ReRanker("mt5", verbose=False, compile="off")
    plain = MonoT5ReRanker(str(tiny_mt5), verbose=False, compile="off")
    assert published.tokenizer_name == MT5_BASE
    assert np.array_equal(published.score(QUERIES[:1] * 4, DOCS),
                          plain.score(QUERIES[:1] * 4, DOCS))


def test_tok_model_overrides_and_a_foreign_tokenizer_is_refused(hub, tiny_mt5, tiny_xlmr):
    from crossvariety.rerank.monot5 import MonoT5ReRanker
    publish_mt5_lt(hub, tiny_mt5, base_tokenizer=False)
    reranker = MonoT5ReRanker("mt5-lt-cafr", verbose=False, compile="off",
                              tok_model=str(tiny_mt5))
    assert reranker.tokenizer_name == str(tiny_mt5)
    with pytest.raises(UserError, match=rf"the tokenizer {re.escape(str(tiny_xlmr))} has \d+ "
                                        r"tokens, more than the \d+ of .*: not this model's"):
        MonoT5ReRanker("mt5-lt-cafr", verbose=False, compile="off", tok_model=str(tiny_xlmr))


def first_stage_run(workdir):
    """A first-stage run of the toy Catalan queries over the toy French passages."""
    path = workdir / "runs" / "mmarco-v2-fr-dev-small.bm25.q-ca.retrieve.res.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for qid in CA_DEV_QUERIES:
            for rank, docno in enumerate(list(FR_PASSAGES)[:5]):
                f.write(f"{qid} Q0 {docno} {rank} {10 - rank} bm25\n")
    return path


def reranked(path):
    """{(qid, docno): score} of a run file."""
    return {(qid, docno): float(score) for qid, _, docno, _, score, _ in
            (line.split() for line in gzip.open(path, "rt").read().splitlines())}


def plain_scores(tiny_mt5, pairs):
    """What the plain folder scores for (qid, docno) pairs of the toy data, as a run file
    prints them."""
    from crossvariety.rerank.monot5 import MonoT5ReRanker
    scores = MonoT5ReRanker(str(tiny_mt5), verbose=False, compile="off").score(
        [CA_DEV_QUERIES[q] for q, _ in pairs], [FR_PASSAGES[d] for _, d in pairs])
    return {pair: float(np.float32(score)) for pair, score in zip(pairs, scores)}


def test_rerank_mt5_script_on_the_published_lt_layout(hub, workdir, tiny_mt5):
    """The acceptance: --model mt5-lt-cafr from a cache holding the three published files and
    the base model's tokenizer re-ranks exactly as the plain folder; without the base
    tokenizer, one line names the missing file and --tokenizer, and --tokenizer mends it."""
    publish_mt5_lt(hub, tiny_mt5)
    first = first_stage_run(workdir)
    common = ["--run", first, "--dataset", "irds:mmarco/v2/fr", "--queries",
              workdir / "data" / "translations" / "mmarco-v2-fr-dev-small.ca.tsv"]
    out = workdir / "runs" / "mmarco-v2-fr-dev-small.bm25.q-ca.rerank-mt5-lt-cafr.res.gz"
    proc = run_script("rerank_mt5.py", *common, "--model", "mt5-lt-cafr", cwd=workdir,
                      env={"HF_HUB_CACHE": str(hub)})
    assert f"ships no tokenizer: using its base model's, {MT5_BASE}" in proc.stderr
    published = reranked(out)
    assert len(published) == 20
    assert published == pytest.approx(plain_scores(tiny_mt5, list(published)), abs=5e-8)

    bare = workdir / "bare-hub"
    publish_mt5_lt(bare, tiny_mt5, base_tokenizer=False)
    proc = run_script("rerank_mt5.py", *common, "--model", "mt5-lt-cafr", "--overwrite",
                      cwd=workdir, env={"HF_HUB_CACHE": str(bare)}, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and lines[-1].startswith("rerank_mt5.py: ")
    assert f"{MT5_LT} ships no tokenizer (no tokenizer.json, spiece.model, " \
           f"sentencepiece.bpe.model), and its base model's, {MT5_BASE}, is not in the local " \
           "Hugging Face cache and HF_HUB_OFFLINE=1 is set; run this once where" in lines[-1]
    assert lines[-1].endswith("pass --tokenizer ID_OR_PATH (tok_model= in Python)")
    out.unlink()
    run_script("rerank_mt5.py", *common, "--model", "mt5-lt-cafr", "--tokenizer", tiny_mt5,
               cwd=workdir, env={"HF_HUB_CACHE": str(bare)})
    assert reranked(out) == published


def test_run_scripts_rerank_with_the_published_lt_layout(hub, workdir, tiny_mt5, tiny_xlmr):
    publish_mt5_lt(hub, tiny_mt5)
    env = {"HF_HUB_CACHE": str(hub)}
    proc = run_script("run_mmarco.py", "--pairs", "ca-fr", "--rerank", "mt5-lt-cafr",
                      "--evaluate", cwd=workdir, env=env)
    assert "mmarco bm25 >> mt5-lt-cafr" in proc.stdout
    scores = reranked(workdir / "runs" / "mmarco-v2-fr-dev-small.bm25.q-ca.rerank-"
                                         "mt5-lt-cafr.res.gz")
    assert scores == pytest.approx(plain_scores(tiny_mt5, list(scores)), abs=5e-8)
    run_script("run_neuclir.py", "--datasets", "irds:neumarco/fa/dev/small", "--models",
               tiny_xlmr, "--rerank", "mt5-lt-cafr", cwd=workdir, env=env)
    assert (workdir / "runs" / f"neumarco-fa-dev-small.{tiny_xlmr.name}.q-en.rerank-"
                               "mt5-lt-cafr.res.gz").is_file()


def test_finetune_mt5_from_the_published_lt_layout_saves_a_tokenizer(hub, tmp_path, tiny_mt5):
    from crossvariety.rerank.monot5 import MonoT5ReRanker
    publish_mt5_lt(hub, tiny_mt5)
    train = tmp_path / "toy.jsonl"
    train.write_text("".join(json.dumps({"query": q, "pos": [DOCS[i]], "neg": [DOCS[-1 - i]]})
                             + "\n" for i, q in enumerate(QUERIES)))
    out = tmp_path / "out"
    run_script("finetune_mt5.py", "--train", train, "--model", "mt5-lt-cafr", "--batch-size",
               "4", "--max-steps", "1", "--out", out, cwd=tmp_path, env={"HF_HUB_CACHE": str(hub)})
    assert json.loads((out / "training.json").read_text())["tokenizer"] == MT5_BASE
    assert models.has_tokenizer(out)
    trained = MonoT5ReRanker(str(out), verbose=False, compile="off")
    assert trained.tokenizer_name == str(out)


# ----------------------------------------------------------------------------- BGE-M3

@pytest.mark.parametrize("short, layout", [("bge-m3-lt-cafr", "bge-m3-lt-cafr"),
                                           ("bge-m3-lt-afdt", "bge-m3-lt-afdt"),
                                           ("bge-m3", "bge-m3")])
def test_bge_m3_as_published_encodes_as_plain(hub, tiny_xlmr, short, layout):
    from crossvariety.families.dense import BgeM3Encoder
    files = publish(hub, models.MODELS[short], tiny_xlmr, layout)
    assert files.get("model copy.safetensors", NEVER_READ) == NEVER_READ  # loading it would fail
    published = BgeM3Encoder(short, device="cpu", verbose=False, compile="off")
    plain = BgeM3Encoder(str(tiny_xlmr), device="cpu", verbose=False, compile="off")
    assert published.tokenizer_name == models.MODELS[short]
    vectors = published.encode(QUERIES + DOCS)
    assert np.array_equal(vectors, plain.encode(QUERIES + DOCS))
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3


# ----------------------------------------------------------------------------- ColBERT-XM

@pytest.mark.parametrize("short, layout", [("colbert-xm", "colbert-xm"),
                                           ("colbert-xm-lt-cafr", "colbert-xm-lt"),
                                           ("colbert-xm-lt-afdt", "colbert-xm-lt")])
def test_colbert_xm_as_published_encodes_as_plain(hub, tiny_colbert_xm, short, layout):
    from crossvariety.families.colbert import ColBERTXMEncoder
    publish(hub, models.MODELS[short], tiny_colbert_xm, layout)
    published = ColBERTXMEncoder(short, language="fr", device="cpu", verbose=False)
    plain = ColBERTXMEncoder(str(tiny_colbert_xm), language="fr", device="cpu", verbose=False)
    assert published.tokenizer_name == models.MODELS[short]
    assert np.array_equal(published.encode_queries(QUERIES).numpy(),
                          plain.encode_queries(QUERIES).numpy())
    vectors, lengths = published.encode_docs(DOCS)
    expected, expected_lengths = plain.encode_docs(DOCS)
    assert np.array_equal(lengths, expected_lengths)
    assert np.array_equal(vectors.numpy(), expected.numpy())


# ----------------------------------------------------------------------------- errors

def test_errors_tell_offline_missing_repo_file_and_incomplete_folder_apart(hub, tmp_path,
                                                                           tiny_mt5, monkeypatch):
    # (a) offline, not cached
    with pytest.raises(UserError, match=r"cannot load model org/absent: not in the local "
                                        r"Hugging Face cache and HF_HUB_OFFLINE=1 is set; run "
                                        r"this once where the hub can be reached"):
        models.fetch("org/absent", "mt5")
    # ... or cached without its weights (only the base tokenizer was downloaded)
    publish(hub, MT5_BASE, tiny_mt5, "mt5-base-mmarco", without=["pytorch_model.bin"])
    with pytest.raises(UserError, match=r"cannot load model unicamp-dl/mt5-base-mmarco-v2: its "
                                        r"model.safetensors or pytorch_model.bin is not in the "
                                        r"local Hugging Face cache"):
        models.fetch("mt5", "mt5")
    # (b) the hub answers: the repository lacks a file
    monkeypatch.setattr(models, "hub_unreachable", lambda: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo_id, **kw: (
        SimpleNamespace(siblings=[SimpleNamespace(rfilename="README.md", size=10)])))
    with pytest.raises(UserError, match=r"cannot load model org/cardonly: the hub repository has "
                                        r"no config.json and no model.safetensors or "
                                        r"pytorch_model.bin \(it holds README.md\)"):
        models.fetch("org/cardonly", "mt5")
    # (c) a local folder without its weights
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_mt5 / "config.json").read_text())
    with pytest.raises(UserError, match=rf"{re.escape(str(folder))}: no model.safetensors or "
                                        r"pytorch_model.bin in this folder"):
        models.fetch(str(folder), "mt5")
    # a checkpoint without tokenizer whose vocabulary is no known base's
    config = json.loads((tiny_mt5 / "config.json").read_text())
    other = tmp_path / "t5-no-tokenizer"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(dict(config, model_type="t5")))
    (other / "model.safetensors").write_bytes((tiny_mt5 / "model.safetensors").read_bytes())
    with pytest.raises(UserError, match=r"ships no tokenizer .* \(model_type t5\) names no base "
                                        r"model whose tokenizer fits; pass --tokenizer"):
        models.load_tokenizer(str(other), "mt5")
