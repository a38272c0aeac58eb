"""Offline fixtures: the real irds: ids served from files at ir_datasets' cache paths.

ir_datasets reads IR_DATASETS_HOME when it is imported, so the variable is set here, before any
test module imports it; the files are written by the ``irds_home`` fixture. When a cache file
exists, ir_datasets skips the download and its checksum.
"""
import os
import shutil
import subprocess
import sys
import tempfile
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
    with open(topics / "topics.jsonl", "w", encoding="utf-8") as f:
        for qid, (title, fa_title) in NEUCLIR_TOPICS.items():
            def topic(lang, source, text):
                return {"lang": lang, "source": source, "topic_title": text,
                        "topic_description": text, "topic_narrative": text}
            f.write(json.dumps({"topic_id": qid, "topics": [
                topic("eng", "original", title), topic("fas", "human translation", fa_title),
                topic("fas", "machine translation", fa_title)]}, ensure_ascii=False) + "\n")
    (topics / "qrels").write_text("".join(f"{q} fas {d} {r}\n" for q, d, r in NEUCLIR_QRELS))


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


def flores_source():
    """The FLORES-200 devtest copy beside the repository (or $FLORES_DIR); skip without it, and
    fail in CI, which runs with ../shared beside the clone."""
    from crossvariety import flores
    source = Path(os.environ.get("FLORES_DIR") or flores.SHARED_COPY)
    if not (source / "metadata_devtest.tsv.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"FLORES-200 devtest not found at {source}: CI needs ../shared beside the "
                        "clone (or $FLORES_DIR)")
        pytest.skip("FLORES-200 devtest not available (set FLORES_DIR)")
    return source


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


def run_script(script, *args, cwd, check=True, env=None):
    """Run a stage script as a user would (``env``: more variables); return the process."""
    env = dict(os.environ, IR_DATASETS_HOME=str(IRDS_HOME), PYTHONPATH=str(REPO), **(env or {}))
    proc = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_mt5(tmp_path_factory):
    """An mT5 re-ranker at random weights (2 layers), with a tokenizer trained on the fixtures."""
    from crossvariety.random_models import build_mt5
    texts = list(FR_PASSAGES.values()) + list(FR_DEV_QUERIES.values()) + \
        list(CA_DEV_QUERIES.values()) + list(FA_PASSAGES.values()) + \
        ["Query: Document: Relevant: yes no", "L'aigua  de la col·lecció\tdels diabètics",
         "他補充說：「我們現在有 4 個月大的老鼠」", "Зелёные ёлки 🌲 ß ﬁ"]
    return build_mt5(tmp_path_factory.mktemp("tiny-mt5"), texts * 20, vocab_size=400)


def tiny_xlmr_texts():
    from crossvariety.random_models import synthetic_passages
    return synthetic_passages(240, seed=3) + list(FR_PASSAGES.values()) + \
        list(FR_DEV_QUERIES.values()) + list(CA_DEV_QUERIES.values()) + \
        list(FA_PASSAGES.values()) + list(EN_QUERIES.values())


@pytest.fixture(scope="session")
def tiny_xlmr(tmp_path_factory):
    """A BGE-M3-like XLM-R encoder at random weights (2 layers)."""
    from crossvariety.random_models import build_xlmr
    return build_xlmr(tmp_path_factory.mktemp("tiny-xlmr"), tiny_xlmr_texts() * 3,
                      vocab_size=1500)


@pytest.fixture(scope="session")
def tiny_colbert_xm(tmp_path_factory):
    """A ColBERT-XM checkpoint at random weights (X-MOD, 2 layers, 8 adapters), Stanford format,
    saved with default_language en_XX as antoinelouis/colbert-xm; "lexical" (see
    random_models.build_colbert_xm) so that rankings have clear winners."""
    from crossvariety.random_models import build_colbert_xm
    return build_colbert_xm(tmp_path_factory.mktemp("tiny-colbert-xm") / "colbert-xm-tiny",
                            tiny_xlmr_texts() * 3, vocab_size=1500, lexical=True)
