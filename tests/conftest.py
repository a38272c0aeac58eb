"""Offline fixtures: the real irds: ids served from files at ir_datasets' cache paths.

ir_datasets reads IR_DATASETS_HOME when it is imported, so the variable is set here, before any
test module imports it; the files are written by the ``irds_home`` fixture. When a cache file
exists, ir_datasets skips the download and its checksum.
"""
import atexit
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

IRDS_HOME = Path(tempfile.mkdtemp(prefix="irds-home-"))
os.environ["IR_DATASETS_HOME"] = str(IRDS_HOME)
os.environ["HF_HUB_OFFLINE"] = "1"
# file hashes (crossvariety.provenance) cached per test session, not in the user's ~/.cache
os.environ["CROSSVARIETY_HASH_CACHE"] = str(IRDS_HOME / "file-hashes.json")
REPO = Path(__file__).resolve().parent.parent

# A toy French mMARCO: passages with accents and elisions; dev queries (more than the judged
# "small" subset, as in the real data); Catalan translations of the judged queries.
FR_PASSAGES = {
    "0": "L'eau potable est une ressource essentielle pour la santé des populations.",
    "1": "La tour Eiffel a été construite à Paris pour l'Exposition universelle de 1889.",
    "2": "Les abeilles produisent du miel à partir du nectar des fleurs.",
    "3": "Le diabète de type 1 est une maladie auto-immune qui détruit les cellules du pancréas.",
    "4": "La Loire est le plus long fleuve de France.",
    "5": "Le café est une boisson obtenue à partir des graines torréfiées du caféier.",
    "6": "Les élections municipales ont lieu tous les six ans en France.",
    "7": "Le chocolat noir contient davantage de cacao que le chocolat au lait.",
    "8": "La photosynthèse permet aux plantes de produire de l'oxygène grâce à la lumière.",
    "9": "Le marathon est une course à pied d'une distance de 42,195 kilomètres.",
}
FR_DEV_QUERIES = {
    "101": "Qui produit le miel à partir des fleurs ?",
    "102": "Quand la tour Eiffel a-t-elle été construite ?",
    "103": "Qu'est-ce que le diabète de type 1 ?",
    "104": "Quelle est la distance d'un marathon ?",
    "105": "Combien de temps entre deux élections municipales ?",  # not in dev/small
}
CA_DEV_QUERIES = {
    "101": "Qui produeix la mel a partir de les flors?",
    "102": "Quan es va construir la torre Eiffel?",
    "103": "Què és la diabetis de tipus 1?",
    "104": "Quina és la distància d'una marató?",
}
QRELS_SMALL = [("101", "2"), ("102", "1"), ("103", "3"), ("104", "9")]
# Training queries (MS MARCO train qids) in French and Catalan; 1005 has no qrels.
FR_TRAIN_QUERIES = {"1001": "Qu'est-ce que l'eau potable ?", "1002": "Où est la tour Eiffel ?",
                    "1003": "Que produisent les abeilles ?", "1004": "Qu'est-ce que le diabète ?",
                    "1005": "Quel temps fait-il ?"}
CA_TRAIN_QUERIES = {"1001": "Què és l'aigua potable?", "1002": "On és la torre Eiffel?",
                    "1003": "Què produeixen les abelles?", "1004": "Què és la diabetis?",
                    "1005": "Quin temps fa?"}
QRELS_TRAIN = [("1001", "0"), ("1002", "1"), ("1003", "2"), ("1004", "3")]

# A toy Persian collection for neuMARCO (passages) and neuCLIR (documents with titles), with
# English queries: MS MARCO dev/small for neuMARCO, TREC topics (title + human translation) for
# neuCLIR, graded qrels.
FA_PASSAGES = {
    "f0": "آب آشامیدنی برای سلامت مردم ضروری است.",
    "f1": "برج ایفل در سال ۱۸۸۹ در پاریس ساخته شد.",
    "f2": "زنبورها عسل را از شهد گل‌ها تولید می‌کنند.",
    "f3": "دیابت نوع یک یک بیماری خودایمنی است.",
    "f4": "ماراتن مسابقه دو به طول ۴۲ کیلومتر است.",
}
EN_QUERIES = {"201": "who makes honey from flowers", "202": "when was the eiffel tower built",
              "203": "what is type 1 diabetes"}
EN_QRELS = [("201", "f2", 1), ("202", "f1", 1), ("203", "f3", 1)]
NEUCLIR_TOPICS = {"301": ("eiffel tower construction", "ساخت برج ایفل"),
                  "302": ("honey bees", "زنبور عسل")}
NEUCLIR_QRELS = [("301", "f1", 3), ("301", "f4", 0), ("302", "f2", 2), ("302", "f0", 1)]


def write_mmarco_fixture(home):
    v2 = Path(home) / "mmarco" / "v2"
    v2.mkdir(parents=True, exist_ok=True)
    (v2 / "french_collection.tsv").write_text(
        "".join(f"{d}\t{t}\n" for d, t in FR_PASSAGES.items()), encoding="utf-8")
    (v2 / "french.queries.dev.tsv").write_text(
        "".join(f"{q}\t{t}\n" for q, t in FR_DEV_QUERIES.items()), encoding="utf-8")
    (Path(home) / "mmarco" / "qrels.dev.small.tsv").write_text(
        "".join(f"{q}\t0\t{d}\t1\n" for q, d in QRELS_SMALL), encoding="utf-8")
    (v2 / "french.queries.train.tsv").write_text(
        "".join(f"{q}\t{t}\n" for q, t in FR_TRAIN_QUERIES.items()), encoding="utf-8")
    (Path(home) / "msmarco-passage" / "train").mkdir(parents=True, exist_ok=True)
    (Path(home) / "msmarco-passage" / "train" / "qrels").write_text(
        "".join(f"{q} 0 {d} 1\n" for q, d in QRELS_TRAIN))


def write_neu_fixtures(home):
    """neuMARCO Persian (irds:neumarco/fa/dev/small) and neuCLIR Persian (trec-2022)."""
    import gzip
    import json
    home = Path(home)
    (home / "neumarco").mkdir(parents=True, exist_ok=True)
    (home / "neumarco" / "fa.tsv").write_text(
        "".join(f"{d}\t{t}\n" for d, t in FA_PASSAGES.items()), encoding="utf-8")
    small = home / "msmarco-passage" / "dev" / "small"
    small.mkdir(parents=True, exist_ok=True)
    (small / "queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in EN_QUERIES.items()))
    (small / "qrels").write_text("".join(f"{q} 0 {d} {r}\n" for q, d, r in EN_QRELS))
    docs = home / "neuclir" / "1" / "fas"
    docs.mkdir(parents=True, exist_ok=True)
    with gzip.open(docs / "docs.jsonl.gz", "wt", encoding="utf-8") as f:
        for i, (docno, text) in enumerate(FA_PASSAGES.items()):
            f.write(json.dumps({"id": docno, "title": f"عنوان {i}", "text": text, "url": "",
                                "time": "", "cc_file": ""}, ensure_ascii=False) + "\n")
    topics = home / "neuclir" / "trec-2022"
    topics.mkdir(parents=True, exist_ok=True)
    write_neuclir_topics(topics)
    (topics / "qrels").write_text("".join(f"{q} fas {d} {r}\n" for q, d, r in NEUCLIR_QRELS))


def write_neuclir_topics(folder):
    """NEUCLIR_TOPICS as neuCLIR's topics.jsonl in ``folder``: the English title, its human and
    machine translations into Persian."""
    def topic(lang, source, text):
        return {"lang": lang, "source": source, "topic_title": text,
                "topic_description": text, "topic_narrative": text}
    with open(folder / "topics.jsonl", "w", encoding="utf-8") as f:
        for qid, (title, fa_title) in NEUCLIR_TOPICS.items():
            f.write(json.dumps({"topic_id": qid, "topics": [
                topic("eng", "original", title), topic("fas", "human translation", fa_title),
                topic("fas", "machine translation", fa_title)]}, ensure_ascii=False) + "\n")


@pytest.fixture(scope="session")
def irds_home():
    write_mmarco_fixture(IRDS_HOME)
    write_neu_fixtures(IRDS_HOME)
    return IRDS_HOME


@pytest.fixture
def workdir(tmp_path, irds_home):
    """An experiment folder with the Catalan translations of the toy dev/small queries."""
    translations = tmp_path / "data" / "translations"
    translations.mkdir(parents=True)
    (translations / "mmarco-v2-fr-dev-small.ca.tsv").write_text(
        "".join(f"{q}\t{t}\n" for q, t in CA_DEV_QUERIES.items()), encoding="utf-8")
    return tmp_path


def need(tool, *modes):
    """Skip without the tool; in CI, where .ci/run installs it, fail instead of passing."""
    missing = shutil.which(tool) is None
    if not missing and modes:
        installed = subprocess.run([tool, "-l"], capture_output=True, text=True).stdout.split()
        missing = any(m not in installed for m in modes)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} {' '.join(modes)} missing in CI: .ci/run installs it")
        pytest.skip(f"{tool} {' '.join(modes)} not installed (apt-get install, see README)")


def flores_source(*langs):
    """A FLORES-200 devtest copy holding ``langs`` (default: the paper's 13 languages, which ship
    with the code): $FLORES_DIR, the copy beside the repository, or the shipped one; skip
    without one, and fail in CI, which runs with ../shared beside the clone."""
    from crossvariety.data import flores
    langs = langs or ("ca", "fr", "oc", "af", "nl", "scn", "it", "yue", "zh", "ms", "id", "gd",
                      "en")
    for candidate in (os.environ.get("FLORES_DIR"), flores.SHARED_COPY, flores.EMBEDDED):
        found = flores._codes_in(candidate, langs)
        if found:
            return found[0]
    if os.environ.get("CI"):
        pytest.fail(f"FLORES-200 devtest of {' '.join(langs)} not found: CI needs ../shared "
                    "beside the clone (or $FLORES_DIR)")
    pytest.skip(f"FLORES-200 devtest of {' '.join(langs)} not available (set FLORES_DIR)")


SMOKE_COMMAND = [sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--smoke",
                 "--inject-failure", "--jobs", "1"]
SMOKE = {}  # the GPU suite's --smoke run, started in the background when its test is selected


def pytest_collection_finish(session):
    """Start tests/test_gpu_suite.py's --smoke run (80 s of mostly one core) as soon as the
    session knows it will need it: it runs beside the other tests, which use one core."""
    if any(item.path.name == "test_gpu_suite.py" and item.name.startswith("test_smoke")
           for item in session.items):
        out = Path(tempfile.mkdtemp(prefix="gpu-suite-smoke-")) / "suite"
        SMOKE.update(out=out, start=time.time(), proc=subprocess.Popen(
            [*SMOKE_COMMAND, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO))
        atexit.register(SMOKE["proc"].kill)


def smoke_run():
    """(out, the finished process, its seconds) of the --smoke run (started now if it was not)."""
    if not SMOKE:
        out = Path(tempfile.mkdtemp(prefix="gpu-suite-smoke-")) / "suite"
        SMOKE.update(out=out, start=time.time(), proc=subprocess.Popen(
            [*SMOKE_COMMAND, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO))
    proc = SMOKE["proc"]
    stdout, stderr = proc.communicate(timeout=900)
    finished = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return SMOKE["out"], finished, time.time() - SMOKE["start"]


@pytest.fixture(scope="session")
def flores_main_job(tmp_path_factory):
    """The README's main job (BM25 on FLORES, 7 pairs), run once for the tests that read it:
    (its folder, its process, {file name: bytes} of the runs and table it wrote)."""
    flores_source()
    folder = tmp_path_factory.mktemp("flores-main-job")
    proc = run_script("run_mmarco.py", "--config", REPO / "configs" / "flores_bm25.toml",
                      cwd=folder)
    written = {p.name: p.read_bytes() for p in (folder / "runs" / "flores").iterdir()
               if p.name.endswith((".res.gz", ".md"))}
    return folder, proc, written


def fake_hub(cache, repo, files, repo_type="dataset"):
    """Files of a Hugging Face repository at the hub cache's layout under ``cache``, as a
    download would leave them; with HF_HUB_OFFLINE=1 huggingface_hub serves them."""
    folder = Path(cache) / f"{repo_type}s--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    for name, content in files.items():
        path = folder / "snapshots" / commit / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return Path(cache)


def read_table(text):
    """{row label: {column: cell}} from a markdown table."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def reference_means(scores, qrels, measures=("MRR@10", "R@1000")):
    """ir_measures' mean of each measure over the judged queries (one missing from the run
    scores 0, as the project's evaluation has it), for a run given as {qid: {docno: score}} and
    qrels as (qid, docno[, label]) tuples: the value a table row of that run must print."""
    import ir_measures
    qrels = [ir_measures.Qrel(q, d, rest[0] if rest else 1) for q, d, *rest in qrels]
    judged = {q.query_id for q in qrels}
    run = [ir_measures.ScoredDoc(q, d, s) for q, docs in scores.items() for d, s in docs.items()]
    parsed = {m: ir_measures.parse_measure(m) for m in measures}
    totals = dict.fromkeys(measures, 0.0)
    for value in ir_measures.iter_calc(list(parsed.values()), qrels, run):
        measure = next(m for m, p in parsed.items() if p == value.measure)
        totals[measure] += value.value
    return {m: total / len(judged) for m, total in totals.items()}


def assert_row(row, expected):
    """A printed table row holds the expected means, to the 4 decimals it prints (a † may
    follow)."""
    for measure, value in expected.items():
        assert row[measure].rstrip("†") == f"{value:.4f}", (measure, row[measure], value)


def assert_ranked(docnos, scores, tolerance):
    """A run's documents (``docnos``, best first) are exactly the reference's, in its order: no
    document comes before one that the reference scores more than ``tolerance`` higher (float
    noise between two ways of computing the same scores; closer ones may come in either
    order)."""
    docnos = list(docnos)
    assert sorted(docnos) == sorted(scores)
    values = [scores[d] for d in docnos]
    for i, value in enumerate(values[:-1]):
        assert max(values[i + 1:]) <= value + tolerance, (docnos, values)


def hand_bm25(query_terms, docs, k1=0.9, b=0.4):
    """Robertson-Sparck Jones BM25 as PISA computes it (idf floored at a tiny epsilon), summed
    over the query's terms with their frequencies."""
    n = len(docs)
    avgdl = sum(len(t) for t in docs.values()) / n
    scores = {}
    for docno, terms in docs.items():
        score = 0.0
        for term in set(query_terms):
            tf = terms.count(term)
            if not tf:
                continue
            df = sum(term in t for t in docs.values())
            idf = max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6)
            score += query_terms.count(term) * idf * tf * (k1 + 1) / (
                tf + k1 * (1 - b + b * len(terms) / avgdl))
        if score:
            scores[docno] = score
    return scores


def exhaustive_dense(model, queries, passages, max_length=512):
    """The reference run of a BGE-M3 model: FlagEmbedding's vectors, every passage scored by
    inner product; {qid: {docno: score}}."""
    from FlagEmbedding import BGEM3FlagModel
    reference = BGEM3FlagModel(str(model), use_fp16=False, devices="cpu")
    docs = reference.encode(list(passages.values()), max_length=max_length)["dense_vecs"]
    scores = reference.encode(list(queries.values()))["dense_vecs"] @ docs.T
    return {qid: dict(zip(passages, map(float, row))) for qid, row in zip(queries, scores)}


def reference_rerank(model, run, queries, texts, top_k):
    """The reference re-ranking: pyterrier-t5 at batch size 1 (its exact semantics) over each
    query's ``top_k`` first documents of ``run`` (a run frame); {qid: {docno: score}}."""
    from pyterrier_t5 import mT5ReRanker
    first = run.sort_values(["qid", "rank"]).groupby("qid").head(top_k)
    frame = first.assign(query=first.qid.map(queries),
                         text=first.docno.map(texts))[["qid", "query", "docno", "text"]]
    scored = mT5ReRanker(str(model), str(model), batch_size=1, verbose=False)(frame)
    return {qid: dict(zip(group.docno, group.score)) for qid, group in scored.groupby("qid")}


class Launcher:
    """The client of tests/launcher.py: a server that has imported what the scripts import runs
    each script in a fork of itself (a script then starts in milliseconds, not seconds). Started
    on first use; one script at a time."""

    def __init__(self):
        self.server, self.lock = None, threading.Lock()

    def start(self):
        env = dict(os.environ, IR_DATASETS_HOME=str(IRDS_HOME), PYTHONPATH=str(REPO))
        self.server = subprocess.Popen([sys.executable, str(REPO / "tests" / "launcher.py")],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       env=env, cwd=REPO)
        assert json.loads(self.server.stdout.readline()) == {"ready": True}
        atexit.register(self.server.kill)

    def run(self, command, cwd, timeout, env=None):
        with self.lock, tempfile.TemporaryDirectory() as tmp:
            if self.server is None or self.server.poll() is not None:
                self.start()
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            self.server.stdin.write(json.dumps({"script": command[1], "args": command[2:],
                                                "cwd": str(cwd), "stdout": str(out),
                                                "stderr": str(err), "env": env or {}}) + "\n")
            self.server.stdin.flush()
            pid = json.loads(self.server.stdout.readline())["pid"]
            if not select.select([self.server.stdout], [], [], timeout)[0]:
                os.kill(pid, signal.SIGKILL)
                self.server.stdout.readline()
                raise subprocess.TimeoutExpired(command, timeout)
            status = json.loads(self.server.stdout.readline())["status"]
            return subprocess.CompletedProcess(command, status,
                                               out.read_text("utf-8", errors="replace"),
                                               err.read_text("utf-8", errors="replace"))


LAUNCHER = Launcher()
FORK = os.environ.get("TESTS_FORK", "1") != "0"  # TESTS_FORK=0: every script a subprocess
# variables read when used, not when a module is imported: a fork can take them
RUNTIME_ENV = {"https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY", "FLORES_DIR",
               "HF_HUB_CACHE"}


def run_script(script, *args, cwd, check=True, env=None, fork=True):
    """Run a stage script as a user would (``env``: more variables); return the process. It runs
    in a fork of a pre-imported server (tests/launcher.py) unless ``env`` sets a variable that
    modules read at import (a fork would not see it) or ``fork`` is False (a fresh
    interpreter)."""
    command = [sys.executable, str(REPO / script), *map(str, args)]
    if fork and FORK and set(env or {}) <= RUNTIME_ENV:
        proc = LAUNCHER.run(command, cwd, timeout=300, env=env)
    else:
        env = dict(os.environ, IR_DATASETS_HOME=str(IRDS_HOME), PYTHONPATH=str(REPO),
                   **(env or {}))
        proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_mt5(tmp_path_factory):
    """An mT5 re-ranker at random weights (2 layers), with a tokenizer trained on the fixtures."""
    from crossvariety.neural.random_models import build_mt5
    texts = list(FR_PASSAGES.values()) + list(FR_DEV_QUERIES.values()) + \
        list(CA_DEV_QUERIES.values()) + list(FA_PASSAGES.values()) + \
        ["Query: Document: Relevant: yes no", "L'aigua  de la col·lecció\tdels diabètics",
         "他補充說：「我們現在有 4 個月大的老鼠」", "Зелёные ёлки 🌲 ß ﬁ"]
    return build_mt5(tmp_path_factory.mktemp("tiny-mt5"), texts * 20, vocab_size=400)


@pytest.fixture(scope="session")
def lexical_mt5(tmp_path_factory):
    """An mT5 re-ranker whose score is lexical (random_models.build_lexical_mt5): the passage
    that shares the query's words ranks first, so a run's metric has a known value."""
    from crossvariety.neural.random_models import build_lexical_mt5, synthetic_passages
    texts = list(FR_PASSAGES.values()) + list(FR_DEV_QUERIES.values()) + \
        list(CA_DEV_QUERIES.values()) + list(FA_PASSAGES.values()) + list(EN_QUERIES.values()) + \
        [t for pair in NEUCLIR_TOPICS.values() for t in pair] + \
        [" ".join(p.split()[:30]) for p in synthetic_passages(100, seed=1)]
    return build_lexical_mt5(tmp_path_factory.mktemp("lexical-mt5") / "mt5-lexical", texts * 3)


@pytest.fixture(scope="session")
def lexical_xlmr(tmp_path_factory):
    """A BGE-M3-like encoder whose [CLS] vector is a bag of words
    (random_models.build_lexical_xlmr): the passage that shares the query's words ranks first."""
    from crossvariety.neural.random_models import build_lexical_xlmr
    return build_lexical_xlmr(tmp_path_factory.mktemp("lexical-xlmr") / "bge-lexical",
                              tiny_xlmr_texts() * 3)


def tiny_xlmr_texts():
    from crossvariety.neural.random_models import synthetic_passages
    return synthetic_passages(240, seed=3) + list(FR_PASSAGES.values()) + \
        list(FR_DEV_QUERIES.values()) + list(CA_DEV_QUERIES.values()) + \
        list(FA_PASSAGES.values()) + list(EN_QUERIES.values())


@pytest.fixture(scope="session")
def tiny_xlmr(tmp_path_factory):
    """A BGE-M3-like XLM-R encoder at random weights (2 layers)."""
    from crossvariety.neural.random_models import build_xlmr
    return build_xlmr(tmp_path_factory.mktemp("tiny-xlmr"), tiny_xlmr_texts() * 3,
                      vocab_size=1500)


@pytest.fixture(scope="session")
def tiny_colbert_xm(tmp_path_factory):
    """A ColBERT-XM checkpoint at random weights (X-MOD, 2 layers, 8 adapters), Stanford format,
    saved with default_language en_XX as antoinelouis/colbert-xm; "lexical" (see
    random_models.build_colbert_xm) so that rankings have clear winners."""
    from crossvariety.neural.random_models import build_colbert_xm
    return build_colbert_xm(tmp_path_factory.mktemp("tiny-colbert-xm") / "colbert-xm-tiny",
                            tiny_xlmr_texts() * 3, vocab_size=1500, lexical=True)
