"""Issue #19's hostile inputs, one row each: what a user hands over by mistake (a truncated
download, a Latin-1 file, a duplicate, a NaN, a wrong JSON type, a negative count, a folder where
a file goes, a full disk, Ctrl-C). Each row checks the exit status its error gives, that the
message is one line naming the file (and line or byte) and the fix, and that nothing was
half-written; where the work goes on (a re-ranker's duplicate input, a full disk after a
finished run, an interrupted translation), that the result is the right one.

Most rows call the package function that meets the input (fast); test_user_errors.py launches
the scripts for the cases whose script-level behaviour matters (checked before the long work),
and the Ctrl-C test below launches run_mmarco.py.
"""
import errno
import gzip
import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import FR_PASSAGES, REPO, IRDS_HOME
from crossvariety.families import bm25
from crossvariety.report import evaluation
from crossvariety.data import flores, negatives, translation
from crossvariety import runs, settings
from crossvariety.data.datasets import Dataset, read_queries
from crossvariety.errors import INTERRUPTED, UserError, one_line

DOCS = "".join(f"d{i}\t{text}\n" for i, text in enumerate(FR_PASSAGES.values()))
RUN = "1 Q0 d1 1 2.5 r\n1 Q0 d2 2 1.5 r\n2 Q0 d1 1 0.5 r\n"
TRAIN = '{"query": "q", "pos": ["p"], "neg": ["n"]}\n'


def truncated_gzip(text):
    data = gzip.compress(text.encode("utf-8") * 50)
    return data[:len(data) // 2]


def index_of(folder):
    """Build a BM25 index of the dataset folder ``folder`` (tmp/idx): the stream of documents is
    checked as PISA indexes it."""
    def build(tmp):
        return bm25.build_index(Dataset(tmp / folder).docs_iter(), "fr", tmp / "idx", workers=1)
    return build


def irds_docs(name):
    """Read the documents of an ir_datasets dataset whose cached file is ``name`` (tmp/name)."""
    def read(tmp):
        import ir_datasets
        from ir_datasets.formats import TsvDocs
        from ir_datasets.util import GzipExtract, LocalDownload
        download = LocalDownload(tmp / name)
        dataset_id = f"hostile/{tmp.name}"
        ir_datasets.registry.register(dataset_id, ir_datasets.Dataset(TsvDocs(
            GzipExtract(download) if name.endswith(".gz") else download)))
        return list(Dataset(f"irds:{dataset_id}").docs_iter())
    return read


def configure(*argv, config=None):
    """settings.configure of a script with a few typical settings, from these flags."""
    def call(tmp):
        namespace = {"NUM_RESULTS": 1000, "WORKERS": 0, "PAIRS": ["ca-fr"], "MEASURES": [],
                     "ALPHA": 0.05, "SEED": 42}
        script = tmp.parent / f"{tmp.name}-script" / "run_mmarco.py"  # tmp: the inputs alone
        script.parent.mkdir()
        script.write_text("".join(f"{name} = {value!r}  # {name.lower()}\n"
                                  for name, value in namespace.items()))
        namespace["__file__"] = str(script)
        config_args = ["--config", str(tmp / config)] if config else []
        settings.configure(namespace, argv=[*config_args, *argv])
    return call


# id, input files {name: text or bytes}, call(tmp), exit status, the one line (a regex)
CASES = [
    # documents: checked while they stream into the index, before PISA writes anything
    ("docno-twice", {"c/docs.tsv": DOCS + "d3\tagain\n"}, index_of("c"), 1,
     r"c/docs.tsv:11: docno 'd3' again \(first on line 4\); a collection holds each document "
     r"once: remove or rename one of them"),
    ("docs-truncated-gzip", {"c/docs.tsv.gz": truncated_gzip(DOCS)}, index_of("c"), 1,
     r"c/docs.tsv.gz: the gzip data ends early after line \d+ \(a truncated download or copy\); "
     r"fetch or write the file again"),
    ("docs-not-gzip", {"c/docs.tsv.gz": DOCS}, index_of("c"), 1,
     r"c/docs.tsv.gz: not gzip data, though named .gz; rename it without .gz, or compress it"),
    ("docs-gzip-not-named-gz", {"c/docs.tsv": gzip.compress(DOCS.encode())}, index_of("c"), 1,
     r"c/docs.tsv: gzip data in a file not named .gz; rename it docs.tsv.gz"),
    ("docs-latin1", {"c/docs.tsv": "d0\tok\nd1\tcaf\xe9 noir\n".encode("latin-1")},
     index_of("c"), 1, r"c/docs.tsv:2: not UTF-8 \(byte 0xe9 at byte offset 12 of the file: "
                       r"invalid continuation byte\); re-save the file as UTF-8"),
    ("docs-latin1-gzip", {"c/docs.tsv.gz": gzip.compress("d0\tcaf\xe9\n".encode("latin-1"))},
     index_of("c"), 1, r"c/docs.tsv.gz:1: not UTF-8 \(byte 0xe9 at byte offset 6 of the "
                       r"decompressed text"),
    ("jsonl-null-text", {"c/docs.jsonl": '{"docno": "d0", "text": "ok"}\n'
                                         '{"docno": "d1", "text": null}\n'}, index_of("c"), 1,
     r'c/docs.jsonl:2: text is null, not a string; \{"docno": "d1", "title": "...", "text"'),
    ("jsonl-number-text", {"c/docs.jsonl": '{"docno": "d0", "text": 5}\n'}, index_of("c"), 1,
     r"c/docs.jsonl:1: text is 5, not a string"),
    ("jsonl-null-docno", {"c/docs.jsonl": '{"docno": null, "text": "x"}\n'}, index_of("c"), 1,
     r"c/docs.jsonl:1: docno is null, not a string"),
    ("docno-with-space", {"c/docs.tsv": "d 0\ttext\n"}, index_of("c"), 1,
     r"c/docs.tsv:1: docno 'd 0' is empty or holds whitespace, which TREC run files cannot "
     r"hold"),
    ("empty-collection", {"c/docs.tsv": ""}, index_of("c"), 1,
     r"c/docs.tsv: no documents in the file; write one document a line \(docno<TAB>text\)"),
    ("empty-stream", {}, lambda tmp: bm25.build_index(iter([]), "fr", tmp / "idx"), 1,
     r"no documents to index for \S+idx: the collection is empty"),
    ("irds-cache-truncated", {"docs.tsv.gz": truncated_gzip(DOCS)}, irds_docs("docs.tsv.gz"), 1,
     r"irds:hostile/\S+: \S+/docs.tsv.gz is truncated; delete it so that ir_datasets fetches "
     r"it again"),
    ("irds-cache-latin1", {"docs.tsv": b"d0\tcaf\xe9\n"}, irds_docs("docs.tsv"), 1,
     r"irds:hostile/\S+: \S+/docs.tsv is not UTF-8 \(invalid continuation byte\); delete it"),
    # qrels and queries
    ("qrels-twice", {"c/qrels.txt": "1 0 d1 1\n2 0 d2 1\n1 0 d1 0\n"},
     lambda tmp: Dataset(tmp / "c").qrels(), 1,
     r"c/qrels.txt:3: qid 1 docno d1 is judged again \(first on line 1\); keep one judgement "
     r"per query and document \(trec_eval refuses duplicates too\)"),
    ("qrels-latin1", {"c/qrels.txt": b"1 0 d1 1\n2 0 d\xe92 1\n"},
     lambda tmp: Dataset(tmp / "c").qrels(), 1,
     r"c/qrels.txt:2: not UTF-8 \(byte 0xe9 at byte offset 14 of the file"),
    ("qrels-truncated-gzip", {"c/qrels.txt.gz": truncated_gzip("1 0 d1 1\n2 0 d2 1\n")},
     lambda tmp: Dataset(tmp / "c").qrels(), 1, r"c/qrels.txt.gz: the gzip data ends early"),
    ("queries-truncated-gzip", {"q.tsv.gz": truncated_gzip("1\tune question\n")},
     lambda tmp: read_queries(tmp / "q.tsv.gz"), 1,
     r"q.tsv.gz: the gzip data ends early \(a truncated download or copy\); fetch or write"),
    ("queries-not-gzip", {"q.tsv.gz": "1\tune question\n"},
     lambda tmp: read_queries(tmp / "q.tsv.gz"), 1,
     r"q.tsv.gz: not gzip data, though named .gz"),
    ("queries-latin1-offset", {"q.tsv": b"1\tok\n2\tcaf\xe9\n"},
     lambda tmp: read_queries(tmp / "q.tsv"), 1,
     r"q.tsv:2: not UTF-8 \(byte 0xe9 at byte offset 10 of the file"),
    ("flores-truncated", {"flores/fra_Latn.devtest.gz": truncated_gzip("Une phrase.\n")},
     lambda tmp: flores.read_sentences(tmp / "flores", "fra_Latn"), 1,
     r"flores/fra_Latn.devtest.gz: the gzip data ends early .*fetch or write the file again"),
    # run files: trec_eval refuses a document ranked twice; a NaN would rank first
    ("run-twice", {"r.res": RUN + "1 Q0 d1 3 0.1 r\n"}, lambda tmp: runs.read_run(tmp / "r.res"),
     1, r"r.res:4: qid 1 docno d1 again \(first on line 1\); a run ranks a document once per "
        r"query \(trec_eval refuses duplicates too\): fix the file or rerun the stage"),
    ("run-nan", {"r.res": RUN.replace("1.5", "nan")}, lambda tmp: runs.read_run(tmp / "r.res"),
     1, r"r.res:2: score nan is not a finite number"),
    ("run-inf", {"r.res": RUN.replace("0.5", "-inf")}, lambda tmp: runs.read_run(tmp / "r.res"),
     1, r"r.res:3: score -inf is not a finite number"),
    ("run-truncated-gzip", {"r.res.gz": truncated_gzip(RUN)},
     lambda tmp: runs.read_run(tmp / "r.res.gz"), 1, r"r.res.gz: the gzip data ends early"),
    ("run-bad-line", {"r.res": RUN + "3 Q0 d1\n"}, lambda tmp: runs.read_run(tmp / "r.res"), 1,
     r"r.res:4: not a TREC run line \(qid Q0 docno rank score name\): '3 Q0 d1'"),
    ("cached-run-corrupt", {"runs/x.res.gz": gzip.compress(b"1 Q0 d1 1 nope r\n")},
     lambda tmp: runs.cached_run(tmp / "runs/x.res.gz", make=None), 1,
     r"runs/x.res.gz:1: not a TREC run line .*; delete it or pass --overwrite to recompute it"),
    ("cached-run-truncated", {"runs/x.res.gz": truncated_gzip(RUN)},
     lambda tmp: runs.cached_run(tmp / "runs/x.res.gz", make=None, precision="fp32"), 1,
     r"runs/x.res.gz: the gzip data ends early .*; delete it or pass --overwrite to recompute"),
    ("write-nan-run", {}, lambda tmp: runs.write_run(pd.DataFrame(
        {"qid": ["1"], "docno": ["d1"], "rank": [1], "score": [math.nan]}), tmp / "o.res.gz"), 1,
     r"the run for \S+o.res.gz: 1 scores are NaN or infinite \(qids 1\): .*try --dtype fp32"),
    ("evaluate-run-twice", {}, lambda tmp: evaluation.evaluate(
        {"a": runs_frame([("1", "d1", 2.0), ("1", "d1", 1.0)])}, qrels_frame(), ["MRR@10"]), 1,
     r"run a ranks docno d1 twice for qid 1; a run ranks a document once per query"),
    ("evaluate-nan", {}, lambda tmp: evaluation.evaluate(
        {"a": runs_frame([("1", "d2", math.nan), ("1", "d1", 1.0)])}, qrels_frame(),
        ["MRR@10"]), 1, r"run a: 1 scores are NaN or infinite \(qids 1\)"),
    ("evaluate-qrels-twice", {}, lambda tmp: evaluation.evaluate(
        {"a": runs_frame([("1", "d1", 1.0)])}, qrels_frame(twice=True), ["MRR@10"]), 1,
     r"the qrels judge qid 1 docno d1 twice"),
    # training files (mine_negatives.py writes them; the three trainers read them)
    ("pos-a-string", {"t.jsonl": TRAIN + '{"query": "q", "pos": "a string", "neg": ["n"]}\n'},
     lambda tmp: negatives.read_examples(tmp / "t.jsonl"), 1,
     r't.jsonl:2: "pos" is "a string", not a list of strings; a training example is '
     r'\{"query": str, "pos": \[str, ...\], "neg": \[str, ...\]\}'),
    ("neg-not-strings", {"t.jsonl": '{"query": "q", "pos": ["p"], "neg": ["n", 5]}\n'},
     lambda tmp: negatives.read_examples(tmp / "t.jsonl"), 1, r't.jsonl:1: "neg" holds 5, not a '
                                                              r'string'),
    ("pos-null-item", {"t.jsonl": '{"query": "q", "pos": [null], "neg": []}\n'},
     lambda tmp: negatives.read_examples(tmp / "t.jsonl"), 1, r'"pos" holds null, not a string'),
    ("pos-empty", {"t.jsonl": '{"query": "q", "pos": [], "neg": ["n"]}\n'},
     lambda tmp: negatives.read_examples(tmp / "t.jsonl"), 1, r'"pos" is empty'),
    ("query-a-number", {"t.jsonl": '{"query": 7, "pos": ["p"], "neg": []}\n'},
     lambda tmp: negatives.read_examples(tmp / "t.jsonl"), 1, r'"query" is 7, not a string'),
    ("training-latin1", {"t.jsonl": b'{"query": "caf\xe9", "pos": ["p"], "neg": []}\n'},
     lambda tmp: negatives.read_examples(tmp / "t.jsonl"), 1, r"t.jsonl:1: not UTF-8"),
    ("hard-negatives-truncated", {"hn.jsonl.gz": truncated_gzip(
        '{"qid": 1, "pos": [2], "neg": {"bm25": [3]}}\n')},
     lambda tmp: negatives.ce_filtered(tmp / "hn.jsonl.gz", {}, ["9"]), 1,
     r"hn.jsonl.gz: the gzip data ends early"),
    ("hard-negatives-wrong-json", {"hn.jsonl.gz": gzip.compress(b'{"qid": 1, "pos": 2}\n')},
     lambda tmp: negatives.ce_filtered(tmp / "hn.jsonl.gz", {}, ["9"]), 1,
     r"hn.jsonl.gz:1: not a line of msmarco-hard-negatives.jsonl.gz .*download it again"),
    ("ce-scores-truncated", {"ce.pkl.gz": gzip.compress(pickle.dumps({1: {2: 0.5}}))[:-12]},
     lambda tmp: negatives.read_ce_scores(tmp / "ce.pkl.gz"), 1,
     r"ce.pkl.gz: the gzip data ends early \(a truncated download or copy\); delete it and rerun"),
    # settings: counts, numbers and lists that no setting of their kind can take
    ("num-results-negative", {}, configure("--num-results", "-5"), 2,
     r"--num-results -5: a count must be 1 or more"),
    ("num-results-zero", {}, configure("--num-results", "0"), 2,
     r"--num-results 0: this count must be 1 or more"),
    ("workers-negative", {}, configure("--workers", "-3"), 2,
     r"--workers -3: a count must be 0 or more"),
    ("alpha-nan", {}, configure("--alpha", "nan"), 2, r"--alpha nan: not a finite number"),
    ("pairs-empty-list", {"c.toml": "[run_mmarco]\npairs = []\n"}, configure(config="c.toml"), 2,
     r"c.toml: \[run_mmarco\] pairs = \[\]: an empty list names nothing; name at least one"),
    ("config-negative", {"c.toml": "[run_mmarco]\nnum_results = -1\n"},
     configure(config="c.toml"), 2, r"c.toml: \[run_mmarco\] num_results = -1: a count must"),
    ("toml-latin1", {"c.toml": b"[run_mmarco]\n# caf\xe9\nseed = 1\n"}, configure(config="c.toml"),
     2, r"c.toml:2: not UTF-8 \(byte 0xe9 at byte offset 18\); TOML files are UTF-8"),
    # outputs that cannot be written, found before the work
    ("out-is-a-folder", {"o/x": ""}, lambda tmp: runs.check_writable(tmp / "o", option="--out"),
     1, r"o is a folder, not a file to write; name a file \(pass another --out\)"),
    ("out-under-a-file", {"runs": ""}, lambda tmp: runs.check_writable(
        tmp / "runs" / "sub", folder=True, option="--runs-dir"), 1,
     r"cannot write \S+runs/sub: \S+runs is a file, not a folder; pass another --runs-dir"),
    ("atomic-write-onto-a-folder", {"o/x": ""}, lambda tmp: runs.write_text(tmp / "o", "t"), 1,
     r"o is a folder, not a file to write"),
]


def runs_frame(rows):
    return pd.DataFrame(rows, columns=["qid", "docno", "score"])


def qrels_frame(twice=False):
    rows = [("1", "d1", 1), ("2", "d2", 1)] + ([("1", "d1", 0)] if twice else [])
    return pd.DataFrame(rows, columns=["qid", "docno", "label"])


def files_in(folder):
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case, inputs, call, status, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_fix(tmp_path, monkeypatch, case, inputs, call, status,
                                              message):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # configure() installs its own
    for name, content in inputs.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8") if isinstance(content, str) else content
        (tmp_path / name).write_bytes(data)
    with pytest.raises(UserError) as error:
        call(tmp_path)
    line = one_line(error.value)  # the line a script prints (install_handler)
    assert re.search(message, line), line
    assert error.value.exit_status == status
    assert files_in(tmp_path) == set(inputs)  # nothing written, no .partial-* left


def test_there_is_a_row_for_every_case_of_the_issue():
    ids = {case[0] for case in CASES}
    assert {"docno-twice", "qrels-twice", "run-twice", "run-nan", "pos-a-string",
            "docs-truncated-gzip", "docs-not-gzip", "docs-latin1", "qrels-latin1",
            "toml-latin1", "jsonl-null-text", "jsonl-number-text", "empty-collection",
            "num-results-negative", "num-results-zero", "workers-negative", "out-is-a-folder",
            "pairs-empty-list", "cached-run-corrupt", "flores-truncated"} <= ids


def test_a_full_disk_keeps_the_finished_run_and_leaves_no_partial_file(tmp_path, monkeypatch):
    first = runs_frame([("1", "d1", 2.0), ("1", "d2", 1.0)]).assign(rank=[1, 2])
    runs.cached_run(tmp_path / "a.res.gz", lambda: first)
    written = (tmp_path / "a.res.gz").read_bytes()
    real_write = runs.pt.io.write_results

    def disk_full(results, f, **kwargs):
        real_write(results, f, **kwargs)  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.pt.io, "write_results", disk_full)
    with pytest.raises(UserError, match=r"no space left on the device while writing \S+b.res.gz "
                                        r"\(No space left on device\); free some space or write "
                                        r"elsewhere, and rerun: finished files are kept"):
        runs.cached_run(tmp_path / "b.res.gz", lambda: first)
    assert files_in(tmp_path) == {"a.res.gz"}
    assert (tmp_path / "a.res.gz").read_bytes() == written


def test_a_folder_that_refuses_new_files_is_found_before_the_work(tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(runs.tempfile, "TemporaryFile", refused)
    with pytest.raises(UserError, match=r"cannot write in \S+ \(Permission denied\); make it "
                                        r"writable or pass another --runs-dir"):
        runs.check_writable(tmp_path / "runs", folder=True, option="--runs-dir")
    made = []
    with pytest.raises(UserError, match="Permission denied"):
        with runs.atomic_path(tmp_path / "runs" / "x.res.gz"):
            made.append("the block ran")
    assert not made and files_in(tmp_path) == set()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs").chmod(0o555)
    with pytest.raises(UserError, match=r"cannot write in \S+runs \(Permission denied\)"):
        runs.check_writable(tmp_path / "runs", folder=True, option="--runs-dir")


def test_reranker_input_with_duplicates_is_deduplicated_with_a_warning(irds_home, caplog):
    from crossvariety.rerank.monot5 import attach_text
    queries = pd.DataFrame({"qid": ["101", "102"], "query": ["miel", "tour Eiffel"]})
    unique = pd.DataFrame({"qid": ["101", "101", "101", "102", "102"],
                           "docno": ["2", "5", "7", "1", "4"],
                           "score": [3.0, 2.0, 1.0, 2.0, 1.0]})
    twice = pd.concat([unique, pd.DataFrame({"qid": ["101", "102"], "docno": ["5", "1"],
                                             "score": [0.5, 0.1]})], ignore_index=True)
    dataset = Dataset("irds:mmarco/v2/fr")
    with caplog.at_level("WARNING"):
        frame = attach_text(twice, queries, dataset, top_k=2)
    assert "lists 2 documents twice for a query" in caplog.text
    assert frame.equals(attach_text(unique, queries, dataset, top_k=2))
    assert list(frame.docno) == ["2", "5", "1", "4"]  # each once, from its best rank


def test_an_interrupted_translation_keeps_its_finished_chunks(tmp_path, monkeypatch):
    calls, interrupted = [], []

    def tool(command, lines):  # an engine that is interrupted once, in its third chunk
        calls.append(list(lines))
        if len(calls) == 3 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        return [line.upper() for line in lines]

    monkeypatch.setattr(translation, "_tool_command", lambda *args: ["tool"])
    monkeypatch.setattr(translation, "run_line_tool", tool)
    texts = [f"query {i}" for i in range(10)]
    cache = translation.TranslationCache(tmp_path / "cache.sqlite")
    with pytest.raises(KeyboardInterrupt):
        translation.translate(texts, "fr", "ca", "apertium", cache=cache, workers=1,
                              chunk_size=4)
    calls.clear()
    out = translation.translate(texts, "fr", "ca", "apertium",
                                cache=translation.TranslationCache(tmp_path / "cache.sqlite"),
                                workers=1, chunk_size=4)
    assert out == [t.upper() for t in texts]
    assert sum(map(len, calls)) == 2  # the two chunks finished before Ctrl-C were kept


def test_a_failed_build_closes_its_progress_bar(tmp_path, caplog):
    """A bar left open prints when it is collected: after pytest's summary, in a test run."""
    from tqdm.auto import tqdm
    from crossvariety.neural import chunks
    caplog.set_level("INFO", logger="crossvariety.neural.chunks")  # the bar shows

    def docs():
        yield {"docno": "d0", "text": "a"}
        raise UserError("docs.tsv:2: broken")

    with pytest.raises(UserError):
        chunks.encode_chunks(docs(), lambda texts, k: {}, tmp_path / "idx", {}, chunk_docs=1)
    assert not [bar for bar in list(tqdm._instances) if "shard 0/1" in str(bar.desc)]


def test_ctrl_c_is_one_line_exit_130_keeps_finished_runs_and_no_partial_file(tmp_path):
    """Ctrl-C (SIGINT to the terminal's whole process group: the BM25 workers too) while the
    second pair's index is built: one line, status 130, the first pair's runs kept whole."""
    small, big = tmp_path / "small", tmp_path / "big"
    for folder, docs in ((small, DOCS), (big, "".join(f"b{i}\tle texte numéro {i} parle de "
                                                      f"miel et de fleurs {i % 97}\n"
                                                      for i in range(200_000)))):
        folder.mkdir()
        (folder / "docs.tsv").write_text(docs, encoding="utf-8")
        (folder / "queries.tsv").write_text("1\tle miel des fleurs\n", encoding="utf-8")
        (folder / "qrels.txt").write_text(f"1 0 {docs.split(chr(9))[0]} 1\n")
        (folder / "ca.tsv").write_text("1\tel miel de les fleurs\n", encoding="utf-8")
    (tmp_path / "c.toml").write_text("".join(
        f'[pairs.{name}]\nvariety = "ca"\nhighres = "fr"\ncollection = "{name}"\n'
        f'variety_queries = "{name}/ca.tsv"\n' for name in ("small", "big")))
    env = dict(os.environ, IR_DATASETS_HOME=str(IRDS_HOME), PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "run_mmarco.py"), "--config", "c.toml", "--pairs", "small",
         "big", "--workers", "2", "-q"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not list((tmp_path / "indexes" / "bm25").glob(".partial-*.big")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # the pool's workers are analysing documents
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does
    out, err = proc.communicate(timeout=60)
    assert err.splitlines() == [f"run_mmarco.py: {INTERRUPTED}"], err
    assert proc.returncode == 130
    assert INTERRUPTED == "interrupted: finished parts kept; rerun to resume"
    left = files_in(tmp_path)
    assert not [name for name in left if ".partial-" in name], left
    assert not [name for name in left if "indexes/bm25/big" in name]
    kept = sorted(name for name in left if name.startswith("runs/") and name.endswith(".res.gz"))
    assert kept == ["runs/small.bm25.q-ca.retrieve.res.gz", "runs/small.bm25.q-fr.retrieve.res.gz"]
    assert sorted(name for name in left if name.startswith("runs/")) == sorted(
        [*kept, *(name + ".json" for name in kept)])  # each finished run with its record
    for name in kept:  # whole files: the run of one query over the small collection
        run = runs.read_run(tmp_path / name)
        assert set(run.qid) == {"1"} and len(run) >= 1
    assert json.loads((tmp_path / "indexes/bm25/small/crossvariety.json").read_text())[
        "documents"] == len(FR_PASSAGES)
