"""Run files: TREC format through PyTerrier, gzip, written atomically, named by what they hold.

A run file's name says dataset, model, query set and stage:
``{dataset}.{model}.q-{queries}.{stage}.res.gz``, e.g.
``mmarco-v2-fr-dev-small.bm25.q-ca.retrieve.res.gz`` (BM25 top-1000 for the Catalan queries).
The run name (the TREC file's last column) is the file's name, followed by ``:{dtype}`` for a
run a neural model made (``:bf16``, ``:fp32``, ``:fp8``; crossvariety.neural.precision). Beside a run,
``{name}.res.gz.json`` records what made it (crossvariety.provenance); a finished run is reused
only when that record matches. The same results give the same bytes (rows in a fixed order, a
gzip header without name or time).
"""
import contextlib
import errno
import gzip
import io
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt

from . import provenance
from .errors import UserError
from .data.textfiles import TextFileError, check_text, read_lines

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    Works for files and directories (an index). The temporary name keeps the suffixes
    (``.res.gz``) so that writers pick the right format, and starts with a dot so that an
    interrupted run leaves nothing that looks complete (nor the folders made for it). An
    existing ``path`` is replaced. Temporary paths that killed processes left in the folder
    are removed first (remove_leftovers). A folder that cannot be written fails before the block
    runs; a full disk (ENOSPC) while it runs is a one-line UserError, and leaves no partial file.
    """
    path = Path(path)
    created = [d for d in [path.parent, *path.parent.parents] if not d.exists()]
    check_writable(path.parent, folder=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent)
    tmp = path.with_name(f"{PARTIAL}{HOST}@{os.getpid()}.{path.name}")
    _writing.add(os.path.abspath(tmp))
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)
        elif path.is_dir():
            raise UserError(f"{path} is a folder, not a file to write; name a file")
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"no space left on the device while writing {path} ({e.strerror}); "
                            "free some space or write elsewhere, and rerun: finished files are "
                            "kept") from None
        raise
    finally:
        _writing.discard(os.path.abspath(tmp))
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()
        for directory in created:  # a failed write leaves no empty folders behind either
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()


PARTIAL = ".partial-"  # temporary paths: .partial-{host}@{pid}.{name}
HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())  # never "@": it ends the host
_writing = set()  # this process's temporary paths in use


def remove_leftovers(folder):
    """Remove the temporary paths in ``folder`` that processes of this host left when they were
    killed (kill -9, out of memory): those whose process is gone. A process alive under the
    same pid (even an unrelated one that reused it) keeps its leftovers, and so does every
    other host's process (a shared filesystem). Names without a host (.partial-{pid}.*, from
    before the host was recorded) count as this host's."""
    for leftover in Path(folder).glob(f"{PARTIAL}*"):
        named = re.match(r"\.partial-([A-Za-z0-9._-]*)@(\d+)\.", leftover.name) or \
            re.match(r"\.partial-()(\d+)\.", leftover.name)
        if not named or named[1] not in ("", HOST):
            continue
        pid = int(named[2])
        if os.path.abspath(leftover) in _writing or (pid != os.getpid() and _alive(pid)):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        log.info("removed %s, left by process %d, which stopped before finishing it", leftover,
                 pid)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True
def check_writable(path, folder=False, option=None, replaced=False):
    """Fail at once, with one line, if the file ``path`` (the folder ``path`` if ``folder``, to
    write into, or to be replaced as a whole, an index, if ``replaced``) cannot be written: it
    is a folder (a file), a file stands where a folder must be, or the nearest existing folder
    refuses a new file (read-only, no permission). ``option`` names the flag that chooses the
    path, for the fix. Called at a script's start, before the long work."""
    path = Path(path)
    fix = f"pass another {option}" if option else "choose another path"
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file, not a folder to write into; {fix}")
    if not folder and path.is_dir():
        raise UserError(f"{path} is a folder, not a file to write; name a file ({fix})")
    existing = path if folder and not replaced else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write {path}: {existing} is a file, not a folder; {fix}")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".probe-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write in {existing} ({e.strerror}); make it writable or {fix}") \
            from None


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
    check_scores(results, f"the run for {path}")
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


RUN_FORMAT = "qid Q0 docno rank score name"


def read_run(path, fix=None, duplicates=False):
    """Read a TREC run (gzipped or not) into a DataFrame (qid, docno, rank, score), ids as str.

    A file that is not a run (truncated, not UTF-8, a malformed line), a (qid, docno)
    ranked twice (trec_eval refuses it too; allowed with ``duplicates``: the re-ranker drops
    them itself) and a NaN or infinite score are UserErrors that name the line, with ``fix``
    as the fix if given (a cached run: --overwrite)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"run file {path} " + ("is a folder: name the run file in it"
                                               if path.is_dir() else "not found"))
    try:
        run = pt.io.read_results(str(path))
    except Exception as e:  # pandas raises several kinds on a malformed file
        check_text(path, fix)  # a truncated gzip file, or not UTF-8
        bad = next(((n, line) for n, line in read_lines(path) if not _is_run_line(line)), None)
        where = f"{path}:{bad[0]}: not a TREC run line ({RUN_FORMAT}): {bad[1][:80]!r}" if bad \
            else f"{path}: not a TREC run file ({RUN_FORMAT}): {e}"
        raise UserError(f"{where}; {fix or 'fix the file or rerun the stage that wrote it'}") \
            from None
    fix = fix or "fix the file or rerun the stage that wrote it"
    run["qid"] = run["qid"].astype(str)
    run["docno"] = run["docno"].astype(str)
    if not np.isfinite(run["score"].to_numpy()).all():
        lineno, line = next((n, line) for n, line in read_lines(path)
                            if line.split() and not math.isfinite(float(line.split()[4])))
        raise UserError(f"{path}:{lineno}: score {line.split()[4]} is not a finite number; "
                        f"{fix}")
    row = None if duplicates else duplicate_row(run)
    if row is not None:
        qid, docno = run["qid"].iat[row], run["docno"].iat[row]
        first, again = [n for n, line in read_lines(path)
                        if line.split()[0:3:2] == [qid, docno]][:2]
        raise UserError(f"{path}:{again}: qid {qid} docno {docno} again (first on line {first}); "
                        f"a run ranks a document once per query (trec_eval refuses duplicates "
                        f"too): {fix}")
    return run


def _is_run_line(line):
    fields = line.split()
    if not fields:
        return True  # blank lines are skipped
    try:
        int(fields[3]), float(fields[4])
    except (IndexError, ValueError):
        return False
    return len(fields) == 6


def duplicate_row(run):
    """The position of a row of ``run`` (qid, docno columns) whose (qid, docno) another row has,
    or None. A set per query: 1-3 s for a 7M-row run (pandas' duplicated() takes 20)."""
    codes, _ = pd.factorize(run["qid"])
    order = np.argsort(codes, kind="stable")
    docnos = run["docno"].to_numpy()[order]
    starts = (np.flatnonzero(np.diff(codes[order])) + 1).tolist()
    for a, b in zip([0, *starts], [*starts, len(order)]):
        group = docnos[a:b].tolist()
        if len(set(group)) < len(group):
            seen = set()
            for k, docno in enumerate(group):
                if docno in seen:
                    return int(order[a + k])
                seen.add(docno)
    return None


def check_scores(run, name):
    """NaN or infinite scores in ``run`` are a UserError (a NaN would rank first)."""
    bad = ~np.isfinite(run["score"].to_numpy(dtype=float))
    if bad.any():
        qids = list(dict.fromkeys(run["qid"][bad].astype(str)))
        raise UserError(f"{name}: {int(bad.sum())} scores are NaN or infinite (qids "
                        f"{', '.join(qids[:5])}{' ...' if len(qids) > 5 else ''}): the model's "
                        "output overflowed or its weights are broken; try --dtype fp32 or "
                        "check the model")


def truncate(run, depth):
    """The first ``depth`` rows of each query (a run's rows are in rank order)."""
    if depth is None or not len(run) or run.groupby("qid", sort=False).size().max() <= depth:
        return run
    return run.groupby("qid", sort=False).head(depth).reset_index(drop=True)


def run_precision(path):
    """The precision recorded in a run file's name column (None for BM25 and older runs)."""
    try:
        fields = next(iter(read_lines(path)), (0, ""))[1].split()
    except TextFileError as e:
        raise TextFileError(e.problem, "delete it or pass --overwrite to recompute it") from None
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
            return truncate(read_run(path, fix="delete it or pass --overwrite to recompute it"),
                            depth)
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
