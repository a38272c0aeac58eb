import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, hand_bm25
from crossvariety.families.bm25 import META, bm25_retriever, build_index, index_built, model_label
from crossvariety.errors import UsageError, UserError

TOY = {
    "d1": "apple banana apple",
    "d2": "banana cherry",
    "d3": "cherry date elder fig",
    "d4": "grape",
    "d5": "apple",
}


def varied_docs(n, seed=0):
    """``n`` (docno, text) pairs whose vocabulary keeps growing (new words keep appearing in
    later documents), with an empty document and one of punctuation only among them."""
    import random
    rng = random.Random(seed)
    words = [f"w{i}" + "áßж"[i % 3] * (i % 4) for i in range(4 * n)]
    docs = []
    for i in range(n):
        known = words[:20 + 3 * i]  # later documents reach words earlier ones never had
        docs.append((f"d{i}", " ".join(rng.choice(known) for _ in range(rng.randint(3, 30)))))
    docs[n // 3] = ("empty", "")
    docs[n // 2] = ("punct", "!!! ... ?")
    return docs


@pytest.mark.parametrize("ngram", [0, 4])
def test_our_inversion_writes_pyterrier_pisa_s_index_byte_for_byte(tmp_path, ngram):
    """crossvariety.families.pisa_toks: every file of the index equals the one pyterrier_pisa's
    toks indexer writes in one batch; ours spans several batch files (and worker batches),
    which PISA's merge needs padded with the terms seen later (pyterrier_pisa's own multi-batch
    build gets those posting lists wrong: checked here against a hand inversion)."""
    import filecmp
    import numpy as np
    from pyterrier_pisa import PisaIndex
    from crossvariety.families import analysis, pisa_toks
    from crossvariety.families.bm25 import pisa_quiet
    docs = varied_docs(2000)
    analyzer = analysis.get_analyzer("en", ngram=ngram)
    reference, ours = tmp_path / "reference", tmp_path / "ours"
    with pisa_quiet():
        PisaIndex(str(reference), stemmer="none", stops="none").toks_indexer(scale=1).index(
            {"docno": d, "toks": analyzer.counts(t)} for d, t in docs)
        batches = (pisa_toks.analyse_batch(analyzer, docs[i:i + 150])
                   for i in range(0, len(docs), 150))
        assert pisa_toks.write_index(ours, batches, batch_documents=400) == len(docs)
    files = sorted(f.name for f in reference.iterdir())
    assert files == sorted(f.name for f in ours.iterdir())
    assert {f for f in files if not filecmp.cmp(reference / f, ours / f, shallow=False)} == set()
    # and what both hold is the inversion of the documents
    postings = {}
    for docid, (_, text) in enumerate(docs):
        for term, count in analyzer.counts(text).items():
            postings.setdefault(term, []).append((docid, count))
    merged, frequencies = (np.fromfile(ours / f"inv.{k}", dtype=np.uint32) for k in ("docs", "freqs"))
    assert merged[:2].tolist() == [1, len(docs)]
    at = 2
    for term in (ours / "fwd.terms").read_text().splitlines():
        n = merged[at]
        got = list(zip(merged[at + 1:at + 1 + n].tolist(),
                       frequencies[at - 1:at - 1 + n].tolist()))
        assert got == postings.pop(term), term
        at += 1 + n
    assert at == len(merged) and not postings


def test_scores_equal_hand_computation(tmp_path):
    build_index(({"docno": d, "text": t} for d, t in TOY.items()), "en", tmp_path / "idx",
                workers=2)
    retriever = bm25_retriever(tmp_path / "idx")
    res = retriever(pd.DataFrame({"qid": ["q1", "q2"], "query": ["apple cherry apple", "grape"]}))
    docs = {d: t.split() for d, t in TOY.items()}  # the en analysis leaves these words unstemmed
    for qid, query in (("q1", "apple cherry apple"), ("q2", "grape")):
        expected = hand_bm25(query.split(), docs)
        got = dict(zip(res[res.qid == qid].docno, res[res.qid == qid].score))
        assert got.keys() == expected.keys()
        for docno in expected:
            assert got[docno] == pytest.approx(expected[docno], rel=1e-5)
    expected_q1 = hand_bm25("apple cherry apple".split(), docs)
    q1 = res[res.qid == "q1"].sort_values("rank")
    assert list(q1.docno) == sorted(expected_q1, key=expected_q1.get, reverse=True)


def test_non_ascii_collections_are_searchable(tmp_path):
    zh = {"z1": "我们现在有四个月大的老鼠", "z2": "巴黎的埃菲尔铁塔", "z3": "蜜蜂从花中采蜜"}
    build_index(({"docno": d, "text": t} for d, t in zh.items()), "zh", tmp_path / "zh", workers=1)
    ru = {"r1": "Зелёные ёлки в лесу", "r2": "Река Волга течёт в Каспийское море"}
    build_index(({"docno": d, "text": t} for d, t in ru.items()), "ru", tmp_path / "ru", workers=1)
    res = bm25_retriever(tmp_path / "zh")(pd.DataFrame({"qid": ["1"], "query": ["埃菲尔铁塔"]}))
    assert res.sort_values("rank").docno.iloc[0] == "z2"
    res = bm25_retriever(tmp_path / "ru")(pd.DataFrame({"qid": ["1"], "query": ["ёлка"]}))
    assert list(res.docno) == ["r1"]


def test_interrupted_build_leaves_no_index(tmp_path):
    def docs():
        yield {"docno": "d1", "text": "apple"}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(docs(), "en", tmp_path / "idx", workers=1)
    assert not index_built(tmp_path / "idx")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="not a finished BM25 index"):
        bm25_retriever(tmp_path / "idx")


def test_unknown_language_fails_before_work(tmp_path):
    with pytest.raises(UsageError, match="unknown language 'xx'"):
        build_index(iter([]), "xx", tmp_path / "idx")


def test_unigrams_and_bigrams_index_is_recorded_and_used_by_the_retriever(tmp_path):
    docs = {"z1": "我们现在有四个月大的老鼠", "z2": "巴黎的埃菲尔铁塔", "z3": "蜜蜂从花中采蜜"}
    build_index(({"docno": d, "text": t} for d, t in docs.items()), "zh", tmp_path / "zh",
                workers=1, cjk="unigrams+bigrams")
    assert json.loads((tmp_path / "zh" / META).read_text())["cjk"] == "unigrams+bigrams"
    # one character is no bigram: only the unigram index finds it
    res = bm25_retriever(tmp_path / "zh")(pd.DataFrame({"qid": ["1"], "query": ["蜜"]}))
    assert list(res.docno) == ["z3"]
    assert model_label("zh", "unigrams+bigrams") == "bm25-unibi"
    assert model_label("yue", "unigrams+bigrams") == "bm25-unibi"
    assert model_label("fr", "unigrams+bigrams") == model_label("zh") == "bm25"


PISA_INDEX_SCRIPT = """
import logging, sys
sys.path.insert(0, {repo!r})
logging.basicConfig(level=logging.INFO)
from crossvariety.families.bm25 import bm25_retriever, build_index
import pandas as pd
docs = ({{"docno": str(i), "text": f"document {{i}} about topic {{i % 17}}"}} for i in range(3000))
build_index(docs, "en", {index!r}, workers=1, total=3000)
print(bm25_retriever({index!r})(pd.DataFrame({{"qid": ["1"], "query": ["topic 3"]}})).docno.iloc[0])
"""


def test_building_an_index_writes_no_pisa_progress_lines(tmp_path):
    # Unsilenced, PISA prints "Storing terms statistics: 1% [0s]" ... 100%, the same for score
    # bounds, "[INFO] inverting batch", "[info] Number of postings" on stdout and stderr.
    index = tmp_path / "idx"
    proc = subprocess.run([sys.executable, "-c", PISA_INDEX_SCRIPT.format(
        repo=str(REPO), index=str(index))], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3"]  # stdout holds what the script prints, nothing of PISA's
    for pisa in ("Storing", "%] [", "[info]", "[INFO]", "re-mapping", "postings"):
        assert pisa not in proc.stderr, proc.stderr
    # what is left: our log line (our progress bar only for a build longer than 3 s: none here)
    lines = [line for line in re.split(r"[\r\n]", proc.stderr) if line.strip()]
    assert "indexed 3000 documents" in lines[-1]
    assert all(line.startswith("BM25 index (en): ") for line in lines[:-1]), lines


def test_an_index_inverted_by_pyterrier_pisa_is_rebuilt(tmp_path):
    """An index whose record lacks the inversion (built by an earlier version, through
    pyterrier_pisa's toks indexer: wrong posting lists beyond 100,000 documents) is rebuilt."""
    from conftest import run_script
    folder = tmp_path / "coll"
    folder.mkdir()
    (folder / "docs.tsv").write_text("".join(f"{d}\t{t}\n" for d, t in TOY.items()))
    index = tmp_path / "idx"
    run_script("index_bm25.py", "--dataset", folder, "--lang", "en", "--index", index,
               cwd=tmp_path)
    meta = json.loads((index / META).read_text())
    assert meta["inversion"] == "crossvariety.pisa_toks 1"
    del meta["inversion"]
    (index / META).write_text(json.dumps(meta))
    proc = run_script("index_bm25.py", "--dataset", folder, "--lang", "en", "--index", index,
                      cwd=tmp_path)
    assert re.search(r"rebuilding .*idx: inverted by pyterrier_pisa's toks indexer",
                     proc.stderr), proc.stderr
    assert json.loads((index / META).read_text())["inversion"] == "crossvariety.pisa_toks 1"
    again = run_script("index_bm25.py", "--dataset", folder, "--lang", "en", "--index", index,
                       cwd=tmp_path)
    assert "already built" in again.stderr
    # searched as it is only when it is too small to have more than one batch
    meta = json.loads((index / META).read_text())
    del meta["inversion"]
    (index / META).write_text(json.dumps(meta))
    bm25_retriever(index)
    (index / META).write_text(json.dumps(dict(meta, documents=100_001)))
    with pytest.raises(UserError, match="posting lists are wrong beyond 100,000 documents: "
                                        "rebuild it"):
        bm25_retriever(index)
