import gzip
import json
import pickle

import pandas as pd
import pytest

from conftest import CA_TRAIN_QUERIES, FR_PASSAGES, run_script
from crossvariety import negatives

# A hand-made hard-negative file and cross-encoder score table (ids as the real files: ints).
HARD = [
    {"qid": 1001, "pos": [0], "neg": {"bm25": [5, 6, 7], "tas-b": [6, 8, 9]}},
    {"qid": 1002, "pos": [1], "neg": {"bm25": [4, 9], "tas-b": [2]}},
    {"qid": 1003, "pos": [2], "neg": {"bm25": [7]}},  # its only negative is too close: dropped
    {"qid": 9999, "pos": [3], "neg": {"bm25": [4]}},  # not a training query of ours
]
CE = {1001: {0: 5.0, 5: 1.9, 6: 2.0, 7: 2.5, 8: -1.0, 9: 3.0},
      # 1001: threshold 5.0 - 3.0 = 2.0: 5 (1.9), 6 (2.0 = threshold), 8 kept; 7, 9 too close
      1002: {1: 0.0, 4: -3.0, 9: -2.9, 2: -5.0},  # threshold -3.0: 4 and 2 kept
      1003: {2: 1.0, 7: -1.0},  # threshold -2.0: 7 is too close
      9999: {3: 0.0, 4: -9.0}}


@pytest.fixture
def hard_files(tmp_path):
    hard = tmp_path / "hard.jsonl.gz"
    with gzip.open(hard, "wt") as f:
        f.writelines(json.dumps(line) + "\n" for line in HARD)
    ce = tmp_path / "ce.pkl.gz"
    with gzip.open(ce, "wb") as f:
        pickle.dump(CE, f)
    return hard, ce


def test_cross_encoder_margin_filter(hard_files):
    hard, ce = hard_files
    candidates = negatives.ce_filtered(hard, negatives.read_ce_scores(ce),
                                       ["1001", "1002", "1003"], margin=3.0, per_system=5)
    assert candidates == {"1001": (["0"], ["5", "6", "8"]), "1002": (["1"], ["4", "2"])}
    # per-system cap: one negative from each system
    capped = negatives.ce_filtered(hard, negatives.read_ce_scores(ce), ["1001"], per_system=1)
    assert capped == {"1001": (["0"], ["5", "6"])}  # bm25: 5; tas-b: 6 (at the threshold)


def test_missing_cross_encoder_score_is_an_error(hard_files, tmp_path):
    hard, _ = hard_files
    with pytest.raises(ValueError, match="hard.jsonl.gz:1: no cross-encoder score for query 1001"):
        negatives.ce_filtered(hard, {}, ["1001"])


def test_run_mining_never_emits_a_judged_positive():
    run = pd.DataFrame({"qid": ["1"] * 8 + ["2"] * 3,
                        "docno": ["a", "b", "c", "d", "pos1", "e", "pos2", "f", "x", "y", "z"],
                        "score": [8, 7, 6, 5, 4, 3, 2, 1, 3, 2, 1]})
    qrels = pd.DataFrame({"qid": ["1", "1", "3"], "docno": ["pos1", "pos2", "q"],
                          "label": [1, 1, 1]})
    candidates = negatives.from_run(run, qrels, depth=7, skip_top=2)
    assert candidates == {"1": (["pos1", "pos2"], ["c", "d", "e"])}  # ranks 2..6, no positive


def test_sampling_is_seeded():
    candidates = {"1": (["p1", "p2"], ["n1", "n2", "n3"]), "2": (["p3"], ["n4"])}
    text = {d: d.upper() for d in ["p1", "p2", "p3", "n1", "n2", "n3", "n4"]}
    queries = {"1": "one", "2": "two"}
    a = negatives.sample_examples(candidates, queries, text, num_negatives=2, rounds=3, seed=7)
    b = negatives.sample_examples(candidates, queries, text, num_negatives=2, rounds=3, seed=7)
    assert a == b and len(a) == 6
    assert all(len(e["neg"]) == (2 if e["query"] == "one" else 1) for e in a)
    others = [negatives.sample_examples(candidates, queries, text, 2, 3, seed=s) for s in range(8)]
    assert any(o != a for o in others)
    # round r is seeded seed + r: fewer rounds are a prefix, and round 2 of seed 7 is round 1 of 8
    one = negatives.sample_examples(candidates, queries, text, 2, 1, seed=8)
    assert negatives.sample_examples(candidates, queries, text, 2, 2, seed=7)[2:] == one
    assert a[:4] == negatives.sample_examples(candidates, queries, text, 2, 2, seed=7)


def test_mine_negatives_script(workdir, hard_files):
    hard, ce = hard_files
    translations = workdir / "data" / "translations"
    (translations / "mmarco-v2-fr-train.ca.tsv").write_text(
        "".join(f"{q}\t{t}\n" for q, t in CA_TRAIN_QUERIES.items()))
    proc = run_script("mine_negatives.py", "--pair", "ca-fr", "--hard-negatives", hard,
                      "--ce-scores", ce, "--rounds", "2", cwd=workdir)
    assert "5 training queries, 4 of them judged" in proc.stderr  # 1005 has no qrels
    out = workdir / "data" / "training" / "ca-fr.ce.jsonl"
    examples = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(examples) == 4  # 1001 and 1002, two rounds
    assert {e["query"] for e in examples} == {CA_TRAIN_QUERIES["1001"], CA_TRAIN_QUERIES["1002"]}
    first = next(e for e in examples if e["query"] == CA_TRAIN_QUERIES["1001"])
    assert first["pos"] == [FR_PASSAGES["0"]]  # Catalan query, French passages
    assert first["neg"][0] in {FR_PASSAGES[d] for d in ("5", "6", "8")}
    again = run_script("mine_negatives.py", "--pair", "ca-fr", "--hard-negatives", hard,
                       "--ce-scores", ce, "--rounds", "2", "--overwrite", cwd=workdir)
    assert again.returncode == 0 and out.read_text().splitlines() == [
        json.dumps(e, ensure_ascii=False) for e in examples]  # deterministic

    run = workdir / "train.res"
    run.write_text("".join(f"{q} Q0 {d} {r} {10 - r} x\n" for q in ("1001", "1003")
                           for r, d in enumerate(["0", "4", "5", "6", "2", "7"])))
    run_script("mine_negatives.py", "--pair", "ca-fr", "--source", "run", "--run", run,
               "--skip-top", "1", "--num-negatives", "3", cwd=workdir)
    mined = [json.loads(line) for line in
             (workdir / "data" / "training" / "ca-fr.run.jsonl").read_text().splitlines()]
    for example in mined:
        assert example["pos"][0] not in example["neg"] and len(example["neg"]) == 3

    proc = run_script("mine_negatives.py", "--pair", "ca-fr", "--source", "run", cwd=workdir,
                      check=False)
    assert proc.returncode != 0 and "--source run needs --run" in proc.stderr
