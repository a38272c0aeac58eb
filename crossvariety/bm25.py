"""BM25 on PISA over terms analysed in Python (crossvariety.analysis).

PISA's own tokenizer is ASCII-only, so it never sees raw text: documents are indexed as term-count
dicts (``toks_indexer(scale=1)``; the default scale of 100 changes BM25 rankings) and queries are
passed as ``query_toks`` with their term frequencies as weights.
"""
import collections
import contextlib
import ctypes
import itertools
import json
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path

import pyterrier as pt
from tqdm.auto import tqdm

from .analysis import get_analyzer
from .runs import atomic_path

log = logging.getLogger(__name__)
META = "crossvariety.json"  # our record of the analysis an index was built with
K1, B = 0.9, 0.4  # PISA's (and Anserini's) BM25 defaults, as used by the paper's PISA runs


_LIBC = ctypes.CDLL(None)


@contextlib.contextmanager
def _pisa_output_to_stderr():
    """PISA's C++ code prints its progress on stdout; send it to stderr, where logs go, so that
    stdout carries only what a script means to print (a table)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        _LIBC.fflush(None)  # C stdio buffers a pipe's output; flush it while it still goes to 2
        os.dup2(saved, 1)
        os.close(saved)


def _analyse(job):
    lang, batch = job
    analyzer = get_analyzer(lang)
    return [{"docno": docno, "toks": analyzer.counts(text)} for docno, text in batch]


def default_index_path(index_dir, dataset_name):
    return Path(index_dir) / "bm25" / dataset_name


def _analysed_batches(docs, lang, pool, batch_size, window):
    """Analyse batches of documents on the pool, in order, with at most ``window`` batches in
    flight: the documents are read here, in the main thread, so that memory stays bounded and an
    error (or Ctrl-C) while reading them stops the build at once."""
    pending = collections.deque()
    pairs = ((d["docno"], d["text"]) for d in docs)
    while batch := list(itertools.islice(pairs, batch_size)):
        pending.append(pool.apply_async(_analyse, ((lang, batch),)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def index_built(index_dir):
    return (Path(index_dir) / META).is_file()


def build_index(docs, lang, index_dir, workers=0, total=None, batch_size=2000):
    """Analyse ``docs`` ({"docno", "text"} dicts) on ``workers`` processes (0 = all cores) and
    build a PISA index at ``index_dir``. The index appears only when complete."""
    from pyterrier_pisa import PisaIndex
    get_analyzer(lang)  # fail on an unknown language before any work
    workers = workers or os.cpu_count()
    start, count = time.time(), 0
    with atomic_path(index_dir) as tmp:
        # fork: stage scripts are flat top-level code, which spawn would re-run in every worker.
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            progress = tqdm(total=total, unit="doc", desc=f"BM25 index ({lang})", mininterval=2)

            def stream():
                nonlocal count
                for batch in _analysed_batches(docs, lang, pool, batch_size, window=4 * workers):
                    yield from batch
                    count += len(batch)
                    progress.update(len(batch))

            with _pisa_output_to_stderr():
                PisaIndex(str(tmp), stemmer="none", stops="none").toks_indexer(scale=1).index(
                    stream())
            progress.close()
        if count == 0:
            raise ValueError(f"no documents to index for {index_dir}")
        (tmp / META).write_text(json.dumps({"lang": lang, "documents": count}))
    log.info("indexed %d documents (%s analysis) into %s in %.1fs", count, lang, index_dir,
             time.time() - start)
    return count


class AnalyseQuery(pt.Transformer):
    """query -> query_toks: the query's analysed terms with their frequencies."""

    def __init__(self, lang):
        self.lang = lang
        self.analyzer = get_analyzer(lang)

    def transform(self, topics):
        out = topics.copy()
        out["query_toks"] = [self.analyzer.counts(q) for q in topics["query"]]
        empty = out.qid[[not t for t in out["query_toks"]]]
        if len(empty):
            log.warning("%d queries have no terms after %s analysis and retrieve nothing: "
                        "qids %s", len(empty), self.lang, ", ".join(map(str, empty[:10])))
        return out


def bm25_retriever(index_dir, num_results=1000, k1=K1, b=B, threads=None):
    """AnalyseQuery >> PISA BM25 over an index built by build_index (same analysis language)."""
    from pyterrier_pisa import PisaIndex
    meta_path = Path(index_dir) / META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{index_dir} is not a finished BM25 index (no {META}); "
                                "build it with index_bm25.py")
    lang = json.loads(meta_path.read_text())["lang"]
    index = PisaIndex(str(index_dir), stemmer="none", stops="none", threads=threads or os.cpu_count())
    with _pisa_output_to_stderr():  # the first retriever of an index builds its score bounds
        retriever = index.bm25(k1=k1, b=b, num_results=num_results, toks_scale=1,
                               query_weighted=True)
    return AnalyseQuery(lang) >> PisaBm25(retriever)


class PisaBm25(pt.Transformer):
    """PISA's BM25 retriever on query_toks, its C++ output kept off stdout."""

    def __init__(self, retriever):
        self.retriever = retriever

    def transform(self, topics):
        with _pisa_output_to_stderr():
            results = self.retriever(topics)
        return results.drop(columns=["query_toks"])
