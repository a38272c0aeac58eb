"""Run files: TREC format through PyTerrier, gzip, written atomically, named by what they hold.

A run file's name says dataset, model, query set and stage:
``{dataset}.{model}.q-{queries}.{stage}.res.gz``, e.g.
``mmarco-v2-fr-dev-small.bm25.q-ca.retrieve.res.gz`` (BM25 top-1000 for the Catalan queries).
The run name (the TREC file's last column) is the file's name, followed by ``:{dtype}`` for a
run a neural model made (``:bf16``, ``:fp32``, ``:fp8``; crossvariety.precision). Beside a run,
``{name}.res.gz.json`` records what made it (crossvariety.provenance); a finished run is reused
only when that record matches. The same results give the same bytes (rows in a fixed order, a
gzip header without name or time).
"""
import contextlib
import gzip
import io
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt

from . import provenance
from .errors import UserError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    Works for files and directories (an index). The temporary name keeps the suffixes
    (``.res.gz``) so that writers pick the right format, and starts with a dot so that an
    interrupted run leaves nothing that looks complete (nor the folders made for it). An
    existing ``path`` is replaced.
    """
    path = Path(path)
    created = [d for d in [path.parent, *path.parent.parents] if not d.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".partial-{os.getpid()}.{path.name}")
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()
        for directory in created:  # a failed write leaves no empty folders behind either
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()


def write_text(path, text):
    """Write a text file (a table) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def run_path(runs_dir, dataset, model, queries, stage):
    return Path(runs_dir) / f"{dataset}.{model}.q-{queries}.{stage}.res.gz"


GZIP_LEVEL = 1  # a 6.98M-row run: 31 s at pandas' default level 9, 13 s at 1 (22% larger)


@contextlib.contextmanager
def gzip_text(path, level=GZIP_LEVEL):
    """A text stream into a gzip file whose bytes depend on the text alone: the header holds
    neither the (temporary) file name nor the time."""
    with open(path, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=level,
                          mtime=0) as packed, \
            io.TextIOWrapper(packed, encoding="utf-8", newline="") as text:
        yield text


def in_order(results):
    """The rows of a run by qid (as strings), then rank: the same bytes whatever order the
    retriever returned its queries in."""
    codes, qids = pd.factorize(results["qid"])
    position = np.argsort(np.argsort(np.array([str(q) for q in qids]), kind="stable"))
    ranks = results["rank"].to_numpy().astype(np.int64)
    key = position[codes].astype(np.int64) * (int(ranks.max()) + 1) + ranks
    if (np.diff(key) > 0).all():
        return results
    return results.iloc[np.argsort(key)]  # keys are unique: any sort is stable


def write_run(results, path, name=None, record=None):
    """Write a results DataFrame (qid, docno, rank, score) as a TREC run (pt.io.write_results),
    gzipped when ``path`` ends in .gz, atomically, rows in a fixed order (in_order). With a
    ``record`` (crossvariety.provenance.new_record), the record of what made it is written
    beside it, ``path``.json, before the run appears under its name."""
    start = time.time()
    results = in_order(results) if len(results) else results
    with atomic_path(path) as tmp:
        if str(path).endswith(".gz"):
            with gzip_text(tmp) as f:
                pt.io.write_results(results, f, format="trec", run_name=name or run_name(path))
        else:
            pt.io.write_results(results, str(tmp), format="trec", run_name=name or run_name(path))
        if record is not None:
            record = provenance.write_record(path, record, tmp)
    if record is not None:
        provenance.remember_sha256(path, record["run"]["sha256"])
    log.info("wrote %s (%d rows, %d queries) in %.1fs", path, len(results),
             results["qid"].nunique() if len(results) else 0, time.time() - start)


def read_run(path):
    """Read a TREC run (gzipped or not) into a DataFrame (qid, docno, rank, score), ids as str."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"run file {path} not found")
    try:
        run = pt.io.read_results(str(path))
    except Exception as e:  # pandas raises several kinds on a malformed file
        raise UserError(f"{path}: not a TREC run file (qid Q0 docno rank score name): {e}") from e
    run["qid"] = run["qid"].astype(str)
    run["docno"] = run["docno"].astype(str)
    return run


def truncate(run, depth):
    """The first ``depth`` rows of each query (a run's rows are in rank order)."""
    if depth is None or not len(run) or run.groupby("qid", sort=False).size().max() <= depth:
        return run
    return run.groupby("qid", sort=False).head(depth).reset_index(drop=True)


def run_precision(path):
    """The precision recorded in a run file's name column (None for BM25 and older runs)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        fields = f.readline().split()
    name = fields[5] if len(fields) >= 6 else ""
    return name.rsplit(":", 1)[1] if ":" in name else None


def check_precision(path, precision, made="made", elsewhere="--runs-dir"):
    """A finished run of another precision than ``precision`` is an error, not reused."""
    made_in = run_precision(path) if precision else None
    if made_in and made_in != precision:
        raise UserError(f"{path} was {made} in {made_in}, not {precision}: pass --dtype "
                        f"{made_in} to reuse it, --overwrite to replace it, or another {elsewhere}")


def reusable(path, recipe, depth=None, exact_depth=False, optional=()):
    """Whether the finished run at ``path`` serves ``recipe`` at ``depth`` (its record says it
    was made so, or deeper); says why not in the log. A run without a record (made by an
    older version) is reused with a warning: nothing says what made it."""
    record = provenance.read_record(path)
    if record is None:
        log.warning("%s has no record of what made it (%s; runs of older versions have "
                    "none): reused unchecked; --overwrite recomputes it", path,
                    provenance.record_path(path).name)
        return True
    reason = provenance.stale_reason(path, record, recipe, depth, exact_depth, optional)
    if reason:
        log.info("recomputing %s: %s", path.name, reason)
        return False
    return True


def cached_run(path, make, overwrite=False, precision=None, recipe=None, depth=None,
               exact_depth=False, optional=()):
    """The run at ``path``: read if it is there and was made by ``recipe()`` at ``depth`` or
    deeper (truncated then; ``exact_depth``: the same depth only), unless ``overwrite``; else
    made by ``make()`` and written with its record. ``precision`` (a neural model's dtype) is
    recorded in it, and a finished run of another precision is an error, not reused silently.
    ``recipe``: a function giving the identities and settings that make the run
    (crossvariety.provenance); called again after ``make()``, once the model is loaded."""
    path = Path(path)
    if path.is_file() and not overwrite:
        check_precision(path, precision)
        if recipe is None or reusable(path, recipe(), depth, exact_depth, optional):
            made = (provenance.read_record(path) or {}).get("depth")
            deeper = f", made {made} deep, read {depth} deep" if made and depth and made > depth \
                else ""
            log.info("reusing %s (--overwrite recomputes it%s)", path, deeper)
            return truncate(read_run(path), depth)
    start = time.time()
    results = make()
    seconds = time.time() - start
    log.info("computed %s in %.1fs", path.name, seconds)
    record = None if recipe is None else \
        provenance.new_record(recipe(), depth, exact_depth, round(seconds, 1))
    write_run(results, path, name=run_name(path, precision), record=record)
    return results


def run_name(path, precision=None):
    """The TREC run name of the file ``path``: its name, and ``:{precision}`` if given."""
    return Path(path).name.split(".res")[0] + (f":{precision}" if precision else "")
