import functools
import gzip
import hashlib
import http.server
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from conftest import CA_TRAIN_QUERIES, FR_PASSAGES, IRDS_HOME, REPO, run_script
from crossvariety.data import negatives

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


def serve(folder):
    """A local web server of ``folder``'s files; returns (server, its URL)."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def run_with_urls(urls, *args, cwd):
    """mine_negatives.py with the download addresses of ``urls`` ({negatives constant: URL}) in
    place of the Hugging Face ones: the script's own download path, served locally."""
    patch = "; ".join(f"negatives.{name} = {url!r}" for name, url in urls.items())
    code = ("import runpy, sys; from crossvariety.data import negatives; " + patch +
            f"; sys.argv = ['mine_negatives.py', *{list(map(str, args))!r}]"
            f"; runpy.run_path({str(REPO / 'mine_negatives.py')!r}, run_name='__main__')")
    env = dict(os.environ, IR_DATASETS_HOME=str(IRDS_HOME), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_mine_negatives_script(tmp_path, workdir, hard_files):
    """The paper's recipe with the hard-negative files downloaded on first use (a local server
    in place of the hub; SHA-256 recorded, reused offline) or given by path: the same examples;
    "nothing to do" and --overwrite; the --source run recipe."""
    hard, ce = hard_files
    translations = workdir / "data" / "translations"
    (translations / "mmarco-v2-fr-train.ca.tsv").write_text(
        "".join(f"{q}\t{t}\n" for q, t in CA_TRAIN_QUERIES.items()))
    served = tmp_path / "served"  # the files under the names they have on the hub
    served.mkdir()
    names = {"HARD_NEGATIVES_URL": Path(negatives.HARD_NEGATIVES_URL).name,
             "CE_SCORES_URL": Path(negatives.CE_SCORES_URL).name}
    shutil.copy(hard, served / names["HARD_NEGATIVES_URL"])
    shutil.copy(ce, served / names["CE_SCORES_URL"])
    httpd, url = serve(served)
    try:
        urls = {constant: f"{url}/{name}" for constant, name in names.items()}
        proc = run_with_urls(urls, "--pair", "ca-fr", "--rounds", "2", cwd=workdir)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert proc.returncode == 0, proc.stderr
    assert "5 training queries, 4 of them judged" in proc.stderr  # 1005 has no qrels
    data = workdir / "data"
    for given, name in ((hard, negatives.HARD_NEGATIVES_URL), (ce, negatives.CE_SCORES_URL)):
        local = data / Path(name).name
        assert local.read_bytes() == given.read_bytes()  # downloaded, its SHA-256 beside it
        assert local.with_name(local.name + ".sha256").read_text().startswith(
            hashlib.sha256(given.read_bytes()).hexdigest())
    out = data / "training" / "ca-fr.ce.jsonl"
    examples = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(examples) == 4  # 1001 and 1002, two rounds
    assert {e["query"] for e in examples} == {CA_TRAIN_QUERIES["1001"], CA_TRAIN_QUERIES["1002"]}
    for example in examples:  # Catalan queries, French passages: the filtered candidates
        qid = next(q for q, t in CA_TRAIN_QUERIES.items() if t == example["query"])
        positives, kept = {"1001": (["0"], ["5", "6", "8"]), "1002": (["1"], ["4", "2"])}[qid]
        assert example["pos"] == [FR_PASSAGES[d] for d in positives]
        assert len(example["neg"]) == 1 and example["neg"][0] in {FR_PASSAGES[d] for d in kept}
    # the server is gone: the downloaded copies are reused (checked), the same examples
    again = workdir / "again.jsonl"
    run_with_urls(urls, "--pair", "ca-fr", "--rounds", "2", "--out", again, cwd=workdir)
    assert again.read_text() == out.read_text()
    # a file that cannot be downloaded: one line that names it and the fix
    (data / Path(negatives.CE_SCORES_URL).name).unlink()
    proc = run_with_urls(urls, "--pair", "ca-fr", "--out", workdir / "offline.jsonl",
                         cwd=workdir)
    assert proc.returncode == 1 and not (workdir / "offline.jsonl").exists()
    assert "is missing and could not be downloaded from " + urls["CE_SCORES_URL"] in \
        proc.stderr.splitlines()[-1]
    written = out.stat().st_mtime_ns
    proc = run_script("mine_negatives.py", "--pair", "ca-fr", "--hard-negatives", hard,
                      "--ce-scores", ce, "--rounds", "2", cwd=workdir)
    assert "nothing to do" in proc.stderr and out.stat().st_mtime_ns == written
    run_script("mine_negatives.py", "--pair", "ca-fr", "--hard-negatives", hard, "--ce-scores",
               ce, "--rounds", "2", "--overwrite", cwd=workdir)
    assert out.stat().st_mtime_ns != written  # rewritten, and the same: deterministic
    assert out.read_text().splitlines() == [json.dumps(e, ensure_ascii=False) for e in examples]

    run = workdir / "train.res"
    run.write_text("".join(f"{q} Q0 {d} {r} {10 - r} x\n" for q in ("1001", "1003")
                           for r, d in enumerate(["0", "4", "5", "6", "2", "7"])))
    run_script("mine_negatives.py", "--pair", "ca-fr", "--source", "run", "--run", run,
               "--skip-top", "1", "--num-negatives", "3", cwd=workdir)
    mined = [json.loads(line) for line in
             (workdir / "data" / "training" / "ca-fr.run.jsonl").read_text().splitlines()]
    # ranks 1.. of the run, never the judged positive (1001: 0, 1003: 2)
    candidates = {CA_TRAIN_QUERIES["1001"]: (FR_PASSAGES["0"], {"4", "5", "6", "2", "7"}),
                  CA_TRAIN_QUERIES["1003"]: (FR_PASSAGES["2"], {"4", "5", "6", "7"})}
    assert sorted(e["query"] for e in mined) == sorted(candidates)
    for example in mined:
        positive, allowed = candidates[example["query"]]
        assert example["pos"] == [positive] and len(set(example["neg"])) == 3
        assert set(example["neg"]) <= {FR_PASSAGES[d] for d in allowed}
