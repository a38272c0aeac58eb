"""BM25 on PISA over terms analysed in Python (crossvariety.families.analysis).

PISA's own tokenizer is ASCII-only, so it never sees raw text: documents are indexed as term
counts (the index pyterrier_pisa's ``toks_indexer(scale=1)`` writes, inverted with numpy by
crossvariety.families.pisa_toks, which also avoids that indexer's wrong posting lists beyond its
first 100,000 documents; the default scale of 100 changes BM25 rankings) and queries are passed
as ``query_toks`` with their term frequencies as weights.

PISA's C++ code prints thousands of progress lines ("Storing terms statistics: 1% ...") on the
console while it indexes; its verbosity switch in pyterrier-pisa 0.4.9 is broken, so its output
is redirected at the file-descriptor level around every call into PISA (shown only if PISA
fails), and an index build shows one progress bar of ours instead.
"""
import collections
import contextlib
import ctypes
import errno
import itertools
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pyterrier as pt
from tqdm.auto import tqdm

from . import analysis, pisa_toks
from .. import provenance
from .analysis import get_analyzer
from ..errors import UserError, ignore_interrupts
from ..runs import atomic_path

log = logging.getLogger(__name__)
META = "crossvariety.json"  # our record of the analysis an index was built with
K1, B = 0.9, 0.4  # PISA's (and Anserini's) BM25 defaults, as used by the paper's PISA runs


_LIBC = ctypes.CDLL(None)


@contextlib.contextmanager
def pisa_quiet():
    """Send the console output of the C++ code called inside (stdout and stderr, file
    descriptors 1 and 2) to a temporary file; if PISA fails, log the file's last lines.
    Yields a text stream on the real stderr, for a progress bar that must stay visible."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    failed = False  # by an error of PISA's, not the user's input, a full disk nor Ctrl-C
    with tempfile.TemporaryFile() as capture, os.fdopen(os.dup(saved[1]), "w") as terminal:
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        try:
            yield terminal
        except Exception as e:
            failed = not isinstance(e, UserError) and \
                getattr(e, "errno", None) not in (errno.ENOSPC, errno.EDQUOT)
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            _LIBC.fflush(None)  # C stdio buffers what goes to a file; flush it while it still does
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:
                capture.seek(0)
                tail = capture.read().decode("utf-8", "replace").splitlines()[-20:]
                log.error("PISA's last output:\n%s", "\n".join(tail))


def model_label(lang, cjk="bigrams", ngram=0, romanize=False):
    """BM25's name in index folders and run files: bm25; bm25-unibi for Chinese/Cantonese
    analysed into unigrams + bigrams; bm25-char4 for character 4-grams; bm25-uroman(-char4) for
    romanised text."""
    return analysis.spec(lang, cjk, ngram, romanize).label


def _analyzer(spec):
    return get_analyzer(spec.lang, spec.cjk or "bigrams", spec.ngram, spec.romanize)


def _analyse(job):
    spec, batch = job
    return pisa_toks.analyse_batch(_analyzer(analysis.Spec(*spec)), batch)


def default_index_path(index_dir, dataset_name, label="bm25"):
    return Path(index_dir) / label / dataset_name


def _serve(pipe):
    """A worker process: analyse the batches that come down ``pipe`` and send each back."""
    ignore_interrupts()  # Ctrl-C is the main process's to answer; it then kills the workers
    while True:
        try:
            job = pipe.recv()
        except EOFError:  # the main process is gone
            return
        try:
            result = True, _analyse(job)
        except Exception:  # a bug: raised again in the main process, with this traceback
            result = False, traceback.format_exc()
        pipe.send(result)


@contextlib.contextmanager
def _analysis_workers(n):
    """``n`` worker processes (fork: stage scripts are flat top-level code, which spawn would
    re-run in every worker), each with a pipe of its own. Nothing is shared between them, so
    killing them when the block ends, however it ends (an error, Ctrl-C), can never leave this
    process waiting for a lock a killed worker held, as multiprocessing.Pool.terminate() can
    (a worker stopped while it sends a large result keeps the result queue's lock)."""
    context = multiprocessing.get_context("fork")
    pipes, procs = [], []
    try:
        for _ in range(n):
            pipe, theirs = context.Pipe()
            proc = context.Process(target=_serve, args=(theirs,), daemon=True)
            proc.start()
            theirs.close()
            pipes.append(pipe)
            procs.append(proc)
        yield pipes
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.join()
        for pipe in pipes:
            pipe.close()


def _analysed_batches(docs, spec, pipes, batch_size):
    """Analyse batches of documents on the workers (one batch out per worker), in order: the
    documents are read here, in the main thread, so that memory stays bounded and an error (or
    Ctrl-C) while reading them stops the build at once. A worker is sent its next batch only
    once its last result is read, so neither side can wait on a full pipe for the other."""
    pairs = ((d["docno"], d["text"]) for d in docs)
    batches = iter(lambda: list(itertools.islice(pairs, batch_size)), [])
    busy = collections.deque()  # the workers with a batch out, in the order they were sent one
    for pipe in pipes:
        batch = next(batches, None)
        if batch is None:
            break
        pipe.send((spec, batch))
        busy.append(pipe)
    while busy:
        pipe = busy.popleft()
        try:
            ok, result = pipe.recv()
        except EOFError:
            raise RuntimeError("a BM25 analysis worker died (out of memory?)") from None
        if not ok:
            raise RuntimeError(f"a BM25 analysis worker failed:\n{result}")
        batch = next(batches, None)
        if batch is not None:
            pipe.send((spec, batch))
            busy.append(pipe)
        yield result


def index_built(index_dir):
    return (Path(index_dir) / META).is_file()


def analysis_record(spec):
    """The analysis as index metadata and run records write it (terms: words or charN;
    romanize: the uroman version, with ", consonant skeleton" for romanize="skeleton", or
    false)."""
    skeleton = SKELETON_RECORD if spec.romanize == "skeleton" else ""
    return {"lang": spec.lang, "cjk": spec.cjk,
            "terms": f"char{spec.ngram}" if spec.ngram else "words",
            "romanize": f"uroman {analysis.UROMAN_VERSION}{skeleton}" if spec.romanize else False,
            "stops": analysis.stop_source(spec)}


UNINVERTED = ("inverted by pyterrier_pisa's toks indexer (an earlier version of this code), whose "
              "posting lists are wrong beyond 100,000 documents")
SKELETON_RECORD = ", consonant skeleton"


def recorded_analysis(meta):
    """The analysis an index's metadata records (analysis_record's inverse): (lang, cjk, ngram,
    romanize)."""
    terms = meta.get("terms", "words")
    return (meta["lang"], meta.get("cjk"), int(terms[len("char"):]) if terms.startswith("char")
            else 0, analysis.romanization(bool(meta.get("romanize")),
                                          SKELETON_RECORD in (meta.get("romanize") or "")))


def index_inputs(collection, lang, cjk="bigrams", ngram=0, romanize=False):
    """What a BM25 index is made of: the collection's identity (none for documents that are no
    Dataset), the analysis, the inversion."""
    identity = {} if collection is None else {"collection": provenance.collection_id(collection)}
    return {**identity, **analysis_record(analysis.spec(lang, cjk, ngram, romanize)),
            "inversion": pisa_toks.INVERSION}


def stale_index(index_dir, collection, lang, cjk="bigrams", ngram=0, romanize=False):
    """How the built index at ``index_dir`` differs from one of ``collection`` with this
    analysis: a list of differences (empty when it is current), or None when its metadata
    has no identity of its collection (built by an older version)."""
    meta = json.loads((Path(index_dir) / META).read_text())
    if "inversion" not in meta:
        return [UNINVERTED]
    if "collection" not in meta:
        return None
    wanted = index_inputs(collection, lang, cjk, ngram, romanize)
    return provenance.differences({k: meta.get(k) for k in wanted}, wanted)


def run_recipe(collection, lang, cjk, queries, ngram=0, romanize=False):
    """What makes a BM25 run: the collection, the analysis, the queries, BM25's parameters."""
    return {"stage": "retrieve", "model": f"bm25 k1={K1} b={B}",
            **index_inputs(collection, lang, cjk, ngram, romanize),
            "queries": provenance.queries_id(queries)}


def current_index(collection, lang, index_dir, cjk="bigrams", workers=0, ngram=0,
                  romanize=False):
    """The BM25 index of ``collection`` at ``index_dir``: built if missing, rebuilt (with a log
    line naming the difference) if it was built from another collection or analysis."""
    if index_built(index_dir):
        changed = stale_index(index_dir, collection, lang, cjk, ngram, romanize)
        if changed is None:
            log.warning("%s has no record of its collection (built by an older version): used "
                        "unchecked; index_bm25.py --overwrite rebuilds it", index_dir)
            return index_dir
        if not changed:
            return index_dir
        log.info("rebuilding the BM25 index %s: %s", index_dir, "; ".join(changed))
    else:
        log.info("no BM25 index at %s: building it from %s (%s analysis)", index_dir,
                 collection.spec, model_label(lang, cjk, ngram, romanize))
    build_index(collection.docs_iter(), lang, index_dir, workers=workers,
                total=collection.docs_count(), cjk=cjk, collection=collection, ngram=ngram,
                romanize=romanize)
    return index_dir


def build_index(docs, lang, index_dir, workers=0, total=None, batch_size=2000, cjk="bigrams",
                collection=None, ngram=0, romanize=False):
    """Analyse ``docs`` ({"docno", "text"} dicts) on ``workers`` processes (0 = all cores) and
    build a PISA index at ``index_dir``. The index appears only when complete. ``collection``
    (a Dataset, the source of ``docs``): its identity is recorded in the index's metadata."""
    spec = analysis.spec(lang, cjk, ngram, romanize)
    _analyzer(spec)  # fail, or warn of a generic analysis, at once; loads uroman before the fork
    label = ", ".join(str(x) for x in (spec.lang, spec.cjk) if x) + \
        ("" if spec.label in ("bm25", "bm25-unibi") else f", {spec.label[len('bm25-'):]}")
    workers = workers or os.cpu_count()
    start, count = time.time(), 0
    # the collection as it is when its reading starts
    meta = index_inputs(collection, lang, cjk, ngram, romanize)
    if collection is not None:
        meta["collection_files"] = provenance.collection_files(collection)
    with atomic_path(index_dir) as tmp:
        with _analysis_workers(workers) as pipes, pisa_quiet() as terminal, \
                tqdm(total=total, unit="doc", desc=f"BM25 index ({label})", mininterval=2,
                     file=terminal, delay=3,  # no bar for an index built in seconds
                     disable=not log.isEnabledFor(logging.INFO)) as progress:

            def stream():
                nonlocal count
                for batch in _analysed_batches(docs, spec, pipes, batch_size):
                    yield batch
                    count += len(batch.docnos)
                    progress.update(len(batch.docnos))

            analysed = stream()
            first = next(analysed, None)
            if first is None:
                raise UserError(f"no documents to index for {index_dir}: the collection is "
                                "empty")
            pisa_toks.write_index(tmp, itertools.chain([first], analysed))
        (tmp / META).write_text(json.dumps(dict(meta, documents=count), indent=1))
    log.info("indexed %d documents (%s analysis) into %s in %.1fs", count, label, index_dir,
             time.time() - start)
    return count


class AnalyseQuery(pt.Transformer):
    """query -> query_toks: the query's analysed terms with their frequencies."""

    def __init__(self, lang, cjk="bigrams", ngram=0, romanize=False):
        self.lang = lang
        self.analyzer = get_analyzer(lang, cjk or "bigrams", ngram, romanize)

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
        raise UserError(f"{index_dir} is not a finished BM25 index (no {META}); "
                        "build it with index_bm25.py")
    meta = json.loads(meta_path.read_text())
    if "inversion" not in meta and meta.get("documents", 0) > pisa_toks.BATCH_DOCUMENTS:
        raise UserError(f"{index_dir} was {UNINVERTED}: rebuild it (index_bm25.py --overwrite, "
                        "or Bm25Index(..., overwrite=True))")
    index = PisaIndex(str(index_dir), stemmer="none", stops="none", threads=threads or os.cpu_count())
    # n-gram queries carry ~5x the terms of word queries: for such long queries MaxScore is
    # 3-4x faster than PISA's default (block-max WAND), with the same top k (both are exact;
    # docs/bm25_analysis.md). Word queries keep the default, as the paper's PISA runs had it.
    algorithm = "maxscore" if meta.get("terms", "words") != "words" else "block_max_wand"
    with pisa_quiet():  # the first retriever of an index builds its score bounds
        retriever = index.bm25(k1=k1, b=b, num_results=num_results, toks_scale=1,
                               query_weighted=True, query_algorithm=algorithm)
    return AnalyseQuery(*recorded_analysis(meta)) >> PisaBm25(retriever)


class PisaBm25(pt.Transformer):
    """PISA's BM25 retriever on query_toks, its C++ output kept off the console."""

    def __init__(self, retriever):
        self.retriever = retriever

    def transform(self, topics):
        with pisa_quiet():
            results = self.retriever(topics)
        return results.drop(columns=["query_toks"])


# ----------------------------------------------------------------------------- the family
# The interface of crossvariety.families; s["analyzer"] is the documents' (and both query
# sets') analysis language; s["cjk"], s["ngram"], s["romanize"] choose the terms.
NAME = "bm25"
NEURAL = False


def names():
    return [NAME]


def claims(model):
    return model == NAME


def check(model):
    pass  # nothing to load


def label(model, s):
    return model_label(s["analyzer"], s["cjk"], s["ngram"], s["romanize"])


def index_path(index_dir, model, collection_name, s):
    return default_index_path(index_dir, collection_name, label(model, s))


def exact_depth(model):
    return False  # a deeper BM25 run truncated is the shallower run


def retriever(model, collection, index_dir, s):
    """BM25 over ``collection``'s index, built if missing and rebuilt if it was built from
    another collection or analysis."""
    index = index_path(index_dir, model, collection.name, s)
    current_index(collection, s["analyzer"], index, s["cjk"], s["workers"], s["ngram"],
                  s["romanize"])
    return bm25_retriever(index, num_results=s["num_results"])


def recipe(model, collection, queries, index_dir, s):
    return run_recipe(collection, s["analyzer"], s["cjk"], queries, s["ngram"], s["romanize"])
