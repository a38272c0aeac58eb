"""Run files: TREC format through PyTerrier, gzip, written atomically, named by what they hold.

A run file's name says dataset, model, query set and stage:
``{dataset}.{model}.q-{queries}.{stage}.res.gz``, e.g.
``mmarco-v2-fr-dev-small.bm25.q-ca.retrieve.res.gz`` (BM25 top-1000 for the Catalan queries).
The run name (the TREC file's last column) is the file's name, followed by ``:{dtype}`` for a
run a neural model made (``:bf16``, ``:fp32``, ``:fp8``; crossvariety.precision).
"""
import gzip
import contextlib
import logging
import os
import re
import shutil
import socket
import time
from pathlib import Path

import pyterrier as pt

from .errors import UserError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    Works for files and directories (an index). The temporary name keeps the suffixes
    (``.res.gz``) so that writers pick the right format, and starts with a dot so that an
    interrupted run leaves nothing that looks complete (nor the folders made for it). An
    existing ``path`` is replaced. Temporary paths that killed processes left in the folder
    are removed first (remove_leftovers).
    """
    path = Path(path)
    created = [d for d in [path.parent, *path.parent.parents] if not d.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent)
    tmp = path.with_name(f"{PARTIAL}{HOST}@{os.getpid()}.{path.name}")
    _writing.add(os.path.abspath(tmp))
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
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


def write_text(path, text):
    """Write a text file (a table) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def run_path(runs_dir, dataset, model, queries, stage):
    return Path(runs_dir) / f"{dataset}.{model}.q-{queries}.{stage}.res.gz"


GZIP_LEVEL = 1  # a 6.98M-row run: 31 s at pandas' default level 9, 13 s at 1 (22% larger)


def write_run(results, path, name=None):
    """Write a results DataFrame (qid, docno, rank, score) as a TREC run (pt.io.write_results),
    gzipped when ``path`` ends in .gz, atomically."""
    start = time.time()
    with atomic_path(path) as tmp:
        if str(path).endswith(".gz"):
            with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=GZIP_LEVEL) as f:
                pt.io.write_results(results, f, format="trec", run_name=name or run_name(path))
        else:
            pt.io.write_results(results, str(tmp), format="trec", run_name=name or run_name(path))
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


def cached_run(path, make, overwrite=False, precision=None):
    """The run at ``path``: read if it is there (unless ``overwrite``), else made by ``make()``
    and written; ``precision`` (a neural model's dtype) is recorded in it, and a finished run of
    another precision is not reused silently."""
    if Path(path).is_file() and not overwrite:
        check_precision(path, precision)
        log.info("reusing %s (--overwrite recomputes it)", path)
        return read_run(path)
    start = time.time()
    results = make()
    log.info("computed %s in %.1fs", Path(path).name, time.time() - start)
    write_run(results, path, name=run_name(path, precision))
    return results


def run_name(path, precision=None):
    """The TREC run name of the file ``path``: its name, and ``:{precision}`` if given."""
    return Path(path).name.split(".res")[0] + (f":{precision}" if precision else "")
