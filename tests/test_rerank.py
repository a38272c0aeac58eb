import gzip

import numpy as np
import pandas as pd
import pytest

from conftest import CA_DEV_QUERIES, FR_DEV_QUERIES, FR_PASSAGES, QRELS_SMALL, assert_row, \
    assert_ranked, read_table, reference_means, reference_rerank, run_script
from crossvariety.rerank.monot5 import MonoT5ReRanker, attach_text

# Multilingual text with what tokenizers trip on: elisions, double spaces, tabs, CJK, emoji.
HOSTILE_TEXTS = [
    "L'aigua  de la col·lecció\tdels diabètics", "他補充說：「我們現在有 4 個月大的老鼠」",
    "Зелёные ёлки 🌲 ß ﬁ", "  leading and trailing  ", "a" * 3000,
    " ".join(FR_PASSAGES.values()) * 8,  # far beyond 512 tokens: truncated, prompt kept
]


def pairs_frame():
    queries = list(FR_DEV_QUERIES.values()) + list(CA_DEV_QUERIES.values())
    docs = list(FR_PASSAGES.values()) + HOSTILE_TEXTS
    rows = [(f"q{qi}", q, f"d{di}", d) for qi, q in enumerate(queries)
            for di, d in enumerate(docs)]
    return pd.DataFrame(rows, columns=["qid", "query", "docno", "text"])


def test_scores_equal_pyterrier_t5_at_batch_size_one(tiny_mt5):
    from pyterrier_t5 import mT5ReRanker
    frame = pairs_frame()
    reference = mT5ReRanker(str(tiny_mt5), str(tiny_mt5), batch_size=1, verbose=False)(frame)
    ours = MonoT5ReRanker(str(tiny_mt5), verbose=False)(frame)
    assert len(ours) == len(frame) == 144
    np.testing.assert_allclose(ours.score.to_numpy(), reference.score.to_numpy(), atol=1e-5)
    assert ours.score.std() > 1e-3  # the scores are not all the same
    assert list(ours["rank"]) == list(reference["rank"])


def test_ranking_does_not_depend_on_batch_size(tiny_mt5):
    frame = pairs_frame()
    reranker = MonoT5ReRanker(str(tiny_mt5), verbose=False, chunk=50)  # several chunks too
    results = {}
    for size in (1, 7, 64):
        reranker.batch_size = size
        results[size] = reranker(frame)
    for size in (7, 64):
        np.testing.assert_allclose(results[size].score, results[1].score, atol=1e-6)
        assert list(results[size]["rank"]) == list(results[1]["rank"])
    from crossvariety.neural.batching import chunk_bounds  # small chunks first, then up to ``chunk``
    assert chunk_bounds(20, 8, first=2) == [(0, 2), (2, 6), (6, 14), (14, 20)]


def test_fast_tokenizer_matches_the_reference_tokenizer(tiny_mt5):
    from transformers import T5Tokenizer
    slow = T5Tokenizer.from_pretrained(tiny_mt5)
    fast = MonoT5ReRanker(str(tiny_mt5), verbose=False).tokenizer
    for text in HOSTILE_TEXTS + list(FR_PASSAGES.values()):
        prompt = f"Query: quin és Document: {text}"
        assert fast(prompt)["input_ids"] == slow(prompt)["input_ids"], text[:40]


def test_attach_text_rejects_mismatched_runs(irds_home):
    from crossvariety.data.datasets import Dataset
    queries = pd.DataFrame({"qid": ["101", "102"], "query": ["a", "b"]})
    run = pd.DataFrame({"qid": ["101", "101", "102"], "docno": ["2", "1", "1"],
                        "score": [2.0, 1.0, 1.0]})
    collection = Dataset("irds:mmarco/v2/fr")
    frame = attach_text(run, queries, collection, top_k=1)
    assert frame.to_dict("records") == [
        {"qid": "101", "docno": "2", "query": "a", "text": FR_PASSAGES["2"]},
        {"qid": "102", "docno": "1", "query": "b", "text": FR_PASSAGES["1"]}]
    with pytest.raises(ValueError, match="1 qids of the run are not in the query set"):
        attach_text(run.assign(qid=["101", "101", "999"]), queries, collection, 10)
    with pytest.raises(ValueError, match="1 docnos of the run are not in irds:mmarco/v2/fr"):
        attach_text(run.assign(docno=["2", "1", "nope"]), queries, collection, 10)


def test_rerank_mt5_script_end_to_end(workdir, lexical_mt5):
    """The lexical re-ranker over BM25's top 3 of the Catalan queries: each query's documents
    in the reference's order with its scores, nothing more, nothing less."""
    from crossvariety.runs import read_run
    run_script("run_mmarco.py", "--pairs", "ca-fr", cwd=workdir)
    first = workdir / "runs" / "mmarco-v2-fr-dev-small.bm25.q-ca.retrieve.res.gz"
    queries = workdir / "data" / "translations" / "mmarco-v2-fr-dev-small.ca.tsv"
    proc = run_script("rerank_mt5.py", "--run", first, "--dataset", "irds:mmarco/v2/fr",
                      "--queries", queries, "--model", lexical_mt5, "--top-k", "3", cwd=workdir)
    assert "pairs/s" in proc.stderr
    label = f"mmarco-v2-fr-dev-small.bm25.q-ca.rerank-{lexical_mt5.name}"
    out = workdir / "runs" / f"{label}.res.gz"
    assert {line.split()[5] for line in gzip.open(out, "rt")} == {f"{label}:fp32"}
    retrieved = read_run(first)
    expected = reference_rerank(lexical_mt5, retrieved, CA_DEV_QUERIES, FR_PASSAGES, 3)
    sizes = retrieved.groupby("qid").size()
    assert {q: len(d) for q, d in expected.items()} == dict(sizes.clip(upper=3))
    reranked = read_run(out)
    for qid, scores in expected.items():
        got = reranked[reranked.qid == qid].sort_values("rank")
        assert_ranked(got.docno, scores, 1e-5)
        assert list(got["rank"]) == list(range(len(scores)))
        np.testing.assert_allclose(got.score, sorted(scores.values(), reverse=True), atol=1e-5)
    assert len(reranked) == sum(map(len, expected.values()))

    proc = run_script("rerank_mt5.py", "--run", first, "--dataset", "irds:mmarco/v2/fr",
                      "--queries", queries, "--model", lexical_mt5, "--top-k", "3",
                      cwd=workdir)
    assert "nothing to do" in proc.stderr
    proc = run_script("rerank_mt5.py", "--run", first, "--dataset", "irds:mmarco/v2/fr",
                      "--queries", queries, "--model", lexical_mt5, "--dtype", "bf16",
                      cwd=workdir, check=False)
    assert proc.returncode == 1
    assert "was re-ranked in fp32, not bf16: pass --dtype fp32" in proc.stderr

    # the French queries are not the run's: qids match, but a query file of other qids fails
    wrong = workdir / "wrong.tsv"
    wrong.write_text("1\tx\n")
    proc = run_script("rerank_mt5.py", "--run", first, "--dataset", "irds:mmarco/v2/fr",
                      "--queries", wrong, "--model", lexical_mt5, "--out", workdir / "x.res.gz",
                      cwd=workdir, check=False)
    assert proc.returncode != 0 and "qids of the run are not in the query set" in proc.stderr
    assert not (workdir / "x.res.gz").exists()


def test_run_mmarco_with_rerank(workdir, lexical_mt5):
    """BM25 >> the lexical re-ranker: every retrieved passage re-ranked; French queries find
    their passage first; the table prints the reference's values."""
    from crossvariety.runs import read_run
    proc = run_script("run_mmarco.py", "--pairs", "ca-fr", "--model", "bm25", "--rerank",
                      lexical_mt5, "--evaluate", cwd=workdir)
    assert f"mmarco bm25 >> {lexical_mt5.name}" in proc.stdout
    table = read_table(proc.stdout)
    judged = dict(QRELS_SMALL)
    for queries, texts in (("fr", FR_DEV_QUERIES), ("ca", CA_DEV_QUERIES)):
        runs = workdir / "runs"
        first = read_run(runs / f"mmarco-v2-fr-dev-small.bm25.q-{queries}.retrieve.res.gz")
        expected = reference_rerank(lexical_mt5, first, {q: texts[q] for q in judged}, FR_PASSAGES,
                                    1000)
        reranked = read_run(runs / f"mmarco-v2-fr-dev-small.bm25.q-{queries}.rerank-"
                                   f"{lexical_mt5.name}.res.gz")
        for qid, scores in expected.items():
            got = reranked[reranked.qid == qid].sort_values("rank")
            assert_ranked(got.docno, scores, 1e-5)
        assert_row(table[f"ca-fr q-{queries}"], reference_means(expected, QRELS_SMALL))
    assert table["ca-fr q-fr"]["MRR@10"] == "1.0000"  # the answer known by construction


def test_fp8_linear_layers_and_reranking(tiny_mt5):
    """fp8 (emulated on a CPU: the same quantisation as the GPU's torch._scaled_mm path): every
    value within e4m3's rounding of its row's scale, a layer's output close to the plain one,
    and a re-ranker's ranking close to fp32's."""
    import torch
    from scipy.stats import kendalltau
    from crossvariety.neural import fp8
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=generator) * torch.logspace(-3, 1, 64)[:, None]
    x8, scale = fp8.quantize_rows(x)
    assert x8.dtype == torch.float8_e4m3fn and scale.shape == (64, 1)
    error = (x8.float() * scale - x).abs()
    assert (error <= x.abs() / 16 + scale * 2.0 ** -9).all()  # 3 mantissa bits; subnormals
    linear = torch.nn.Linear(256, 128)
    fast = fp8.Float8Linear(linear, emulate=True)
    plain = linear(x).detach()
    relative = ((fast(x) - plain).norm(dim=1) / plain.norm(dim=1)).max().item()
    assert 0 < relative < 0.1, relative
    assert not fp8.supported(torch.device("cpu"))

    frame = pairs_frame()
    reference = MonoT5ReRanker(str(tiny_mt5), verbose=False).score(frame["query"], frame["text"])
    reranker = MonoT5ReRanker(str(tiny_mt5), verbose=False, dtype="fp8")
    layers = [m for m in reranker.network.modules() if isinstance(m, fp8.Float8Linear)]
    # the encoder's (q k v) o (wi_0 wi_1) wo; the decoder's layers act on one row per pair
    assert len(layers) == 4 * len(reranker.network.encoder_layers)
    scores = reranker.score(frame["query"], frame["text"])
    assert not np.array_equal(scores, reference)
    taus = [kendalltau(reference[rows], scores[rows])[0]
            for rows in frame.groupby("qid").indices.values()]
    assert min(taus) > 0.7 and np.mean(taus) > 0.8, taus  # measured: 0.80-0.93



def t5_reference_logits(model, input_ids, mask, direction):
    """logit(yes) - logit(no) through transformers' own modules, for padded inputs."""
    import torch
    encoded = model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
    start = torch.full((len(input_ids), 1), model.config.decoder_start_token_id)
    state = model.get_decoder()(input_ids=start, encoder_hidden_states=encoded,
                                encoder_attention_mask=mask, use_cache=False).last_hidden_state
    return state[:, 0] @ direction


@pytest.mark.parametrize("shape", [
    dict(feed_forward_proj="gated-gelu", tie_word_embeddings=True),  # mT5 (tiny: tied)
    dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),  # mT5-base as published
    dict(feed_forward_proj="relu", tie_word_embeddings=False),  # T5 v1.0 (monoT5 English)
])
def test_t5_forward_equals_transformers(shape):
    """crossvariety.rerank.t5 (fused projections, the bias in the attention, the decoder step without
    cross-attention keys and values) against transformers' modules in fp32, with both attention
    paths, ragged lengths, several decoder layers; and its compiled graph (dynamic shapes, one
    graph) against its eager path."""
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration
    from crossvariety.neural import compiling
    from crossvariety.rerank import t5
    torch.manual_seed(0)
    config = MT5Config(vocab_size=300, d_model=48, d_kv=8, d_ff=96, num_layers=3,
                       num_decoder_layers=2, num_heads=6, relative_attention_num_buckets=16,
                       relative_attention_max_distance=20, decoder_start_token_id=0,
                       dropout_rate=0.0, **shape)
    model = MT5ForConditionalGeneration(config).eval()
    direction = torch.randn(48)
    network = t5.MonoT5Forward(model, direction, max_length=64)
    lengths = torch.tensor([50, 23, 1, 37])  # beyond max_distance: the far buckets too
    input_ids = torch.randint(2, 300, (4, 50))
    mask = (torch.arange(50)[None, :] < lengths[:, None]).long()
    input_ids = input_ids.masked_fill(mask == 0, 0)
    with torch.no_grad():
        reference = t5_reference_logits(model, input_ids, mask, direction)
        assert reference.std() > 1e-3
        for attention in ("sdpa", "flex"):
            ours = network(input_ids, lengths, attention=attention)
            torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
        alone = network(input_ids[1:2, :23], lengths[1:2])  # no padding at all
        torch.testing.assert_close(alone, reference[1:2], atol=1e-5, rtol=1e-5)
        compiler = compiling.Compiler(network, "on", torch.device("cpu"), "test", backend="aot_eager",
                                      eager={"attention": "sdpa"}, compiled={"attention": "flex"})
        run = compiler.for_job(4)
        torch.testing.assert_close(run(input_ids, lengths), reference, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(run(input_ids[:1, :40], lengths[:1].clamp(max=40)),
                                   network(input_ids[:1, :40], lengths[:1].clamp(max=40)),
                                   atol=1e-5, rtol=1e-5)
        assert compiler.working is True


def test_compile_failure_falls_back_to_eager(caplog):
    import torch
    from crossvariety.neural import compiling

    class Untraceable(torch.nn.Module):
        def forward(self, x):
            if x.sum().item() > 0:  # data-dependent branch: no full graph
                return x * 2
            return x

    compiler = compiling.Compiler(Untraceable(), "on", torch.device("cpu"), "a test module",
                                  backend="aot_eager")
    x = torch.ones(3, 2)
    assert torch.equal(compiler.for_job(3)(x), x * 2)
    assert compiler.working is False and "going on without it" in caplog.text
    assert not compiler.wanted(10**6)
    auto = compiling.Compiler(Untraceable(), "auto", torch.device("cpu"), "x")
    assert not auto.wanted(10**6)  # auto: never on a CPU
    with pytest.raises(ValueError, match="--compile 'yes': choose auto, on, off"):
        compiling.Compiler(Untraceable(), "yes", torch.device("cpu"), "x")
