"""Indexing in chunks, resumable and shardable, for every neural index (dense.py, plaid.py).

A collection is encoded in chunks of documents, each saved under {index}.parts/ when encoded,
so a killed job resumes at its first missing chunk, and jobs split the chunks: the n jobs of a
job array (--shard i/n: chunk k belongs to shard k mod n) or the ranks of a torchrun job (rank
r of w is shard r/w; of shard i/n, shard i*w+r of n*w). The job that finds every chunk encoded
merges them into the index, which appears only when complete; under torchrun the ranks meet at
a barrier and rank 0 merges.

Jobs on one index may run at once (shards that finish together, the same command twice): they
agree through file locks (fcntl.flock, which the kernel releases when a job dies, even by
kill -9). Every job holds the index's lock (.{name}.lock beside it) shared while it encodes;
merging, or removing the chunks (--overwrite), holds it exclusively, so a merge happens once,
after every encoder has stopped, and the job that comes second finds the index built. A chunk
is encoded by the job that claims it (a lock on claim-NNNNNN): a job that finds a chunk of
its shard claimed goes on with the next ones and waits for it at the end (and encodes it if its
claimant stopped without saving it).
"""
import concurrent.futures
import contextlib
import errno
import fcntl
import itertools
import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import ranks
from ..errors import UsageError, UserError
from ..runs import atomic_path, write_text

log = logging.getLogger(__name__)


def parts_dir(index_dir):
    return Path(f"{index_dir}.parts")


def parse_shard(shard):
    match = re.fullmatch(r"(\d+)/(\d+)", shard or "0/1")
    if not match or not int(match[1]) < int(match[2]):
        raise UsageError(f"--shard {shard!r}: write i/n with 0 <= i < n, e.g. 0/4")
    return int(match[1]), int(match[2])


def rank_shard(shard, rank, world):
    """The shard of rank ``rank`` of ``world`` torchrun processes in job array shard ``shard``
    (i/n): i*world + rank of n*world."""
    i, n = parse_shard(shard)
    return f"{i * world + rank}/{n * world}"


# ----------------------------------------------------------------------------- locks

def lock_path(index_dir):
    index_dir = Path(index_dir)
    return index_dir.with_name(f".{index_dir.name}.lock")


def index_lock(index_dir, shared=False):
    """The lock of the index at ``index_dir``: shared by the jobs encoding its chunks, exclusive
    for merging or removing them (a context manager)."""
    path = lock_path(index_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    return locked(path, f"another job merging or removing {index_dir}" if shared else
                  f"the other jobs on {index_dir} (encoding or merging it)", shared)


@contextlib.contextmanager
def locked(path, waiting_for, shared=False, remove=False):
    """Hold a lock on the file ``path``, created if need be: exclusive, or ``shared``. The
    holder of the exclusive lock may delete the file (``remove``: when done): a job that was
    waiting on it then locks the file that is there now."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            lock(fd, waiting_for, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            if _same_file(fd, path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # deleted while we waited
    try:
        yield
    finally:
        if remove:
            path.unlink(missing_ok=True)
        os.close(fd)


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def unlock_file(index_dir):
    """Delete the lock file of a finished index (holding the exclusive lock)."""
    lock_path(index_dir).unlink(missing_ok=True)


_unsupported = set()  # filesystems (by device) without file locks, warned about once


def lock(fd, waiting_for, mode=fcntl.LOCK_EX, block=True):
    """flock ``fd`` (``mode``: exclusive or shared); if another process holds it, log what we
    wait for (or return False at once unless ``block``). Where the filesystem has no locks, warn
    once and go on (True). The kernel releases it when the file is closed or the process ends."""
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if not block:
                return False
            log.info("waiting for %s", waiting_for)
            fcntl.flock(fd, mode)
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        device = os.fstat(fd).st_dev
        if device not in _unsupported:
            _unsupported.add(device)
            log.warning("this filesystem has no file locks (%s): do not run two jobs on one "
                        "index at once", e.strerror)
    return True


def _claim(parts, k, block=False):
    """Claim chunk k for this job: the open, locked claim file, or None if another job holds
    it (``block``: wait for it instead)."""
    fd = os.open(parts / f"claim-{k:06d}", os.O_RDWR | os.O_CREAT, 0o666)
    if lock(fd, f"another job encoding chunk {k} of {parts}", block=block):
        return fd
    os.close(fd)
    return None


# ----------------------------------------------------------------------------- building

def build(index_dir, built, encode, merge):
    """Encode this job's chunks (``encode()``, holding the index's lock shared), then merge
    them into the index (``merge(index_dir)``) once every chunk is there. ``built(index_dir)``
    says whether the index is complete. Under torchrun every rank encodes, the ranks meet at a
    barrier and rank 0 merges. Returns True when the index is complete."""
    with index_lock(index_dir, shared=True):
        if not built(index_dir):  # (built by another job while this one started)
            encode()
    ranks.barrier()  # every rank's chunks are saved
    complete = merge_when_complete(index_dir, built, merge) if ranks.rank() == 0 else None
    ranks.barrier()  # and rank 0 has merged them
    return built(index_dir) if complete is None else complete


def merge_when_complete(index_dir, built, merge, required=False):
    """Holding the index's lock exclusively: ``merge(index_dir)`` if every chunk is encoded and
    no other job has merged them yet. True when the index is complete; missing chunks are
    logged (left to other shards), or an error when ``required`` (--merge-only)."""
    with index_lock(index_dir):
        if built(index_dir):
            log.info("%s is complete (merged by another job)", index_dir)
        else:
            missing = missing_chunks(index_dir)
            if missing is None or missing:
                if required:
                    complete_parts(index_dir)  # the error
                log.info("%d chunks of %s are left to other shards; the last one to finish "
                         "merges", len(missing or []), index_dir)
                return False
            merge(index_dir)
        unlock_file(index_dir)
        return True


def remove(index_dir):
    """Remove an index and its chunks (--overwrite), once no other job is encoding them."""
    import shutil
    with index_lock(index_dir):
        shutil.rmtree(parts_dir(index_dir), ignore_errors=True)
        shutil.rmtree(index_dir, ignore_errors=True)


def encode_chunks(docs, encode, index_dir, meta, shard="0/1", chunk_docs=100_000, total=None,
                  desc="index"):
    """Save this shard's chunks of the collection under {index}.parts/ as part-NNNNNN.npz,
    skipping chunks already there or claimed by another job (waited for at the end):
    ``encode(texts, k)`` gives the chunk's arrays, saved with its docnos. ``docs``: documents
    ({"docno", "text"}), or a function giving a fresh iterator of them, with which a chunk whose
    claimant stopped is encoded here. ``meta`` goes to {index}.parts/meta.json. Call it holding
    the index's lock shared (build). Returns the number of chunks of the whole collection."""
    i, n = parse_shard(shard)
    parts = parts_dir(index_dir)
    parts.mkdir(parents=True, exist_ok=True)
    _agree_on_meta(parts, dict(meta, chunk_docs=chunk_docs))
    start, encoded = time.time(), 0
    while True:
        chunks, done, claimed = _encode_pass(docs() if callable(docs) else docs, encode, parts,
                                             i, n, chunk_docs, total, desc)
        encoded += done
        left = [k for k in claimed if not _saved_after_claim(parts, k)]
        if not left:
            break
        if not callable(docs):
            raise UserError(f"chunks {left} of {index_dir} were claimed by a job that stopped "
                            "before saving them; run again to encode them")
        log.info("chunks %s were claimed by a job that stopped before saving them: encoding "
                 "them", left)
    write_text(parts / f"shard-{i}-of-{n}.done", str(chunks))
    seconds = time.time() - start
    log.info("shard %d/%d: encoded %d documents in %.1fs (%.0f docs/s); %d chunks in all", i, n,
             encoded, seconds, encoded / max(seconds, 1e-9), chunks)
    return chunks


def _agree_on_meta(parts, meta):
    """Record the chunks' settings in meta.json, or check them against those recorded: chunks
    of another model or precision must not mix."""
    meta = json.loads(json.dumps(meta))  # as it reads back
    path = parts / "meta.json"
    with locked(parts / "meta.lock", f"another job recording its settings in {path}",
                remove=True):
        if not path.is_file():
            write_text(path, json.dumps(meta, indent=1))
    before = json.loads(path.read_text())
    changed = sorted(key for key in meta.keys() | before.keys()
                     if meta.get(key) != before.get(key))
    if changed:
        raise UserError(f"{parts} holds chunks encoded with other settings ("
                        + ", ".join(f"{key}: {before.get(key)!r}, now {meta.get(key)!r}"
                                    for key in changed)
                        + "): pass the same settings, or --overwrite to start again")


def _encode_pass(docs, encode, parts, i, n, chunk_docs, total, desc):
    """One pass over the collection: (chunks in all, documents encoded, chunk numbers of this
    shard that other jobs held claimed)."""
    encoded, k, claimed = 0, -1, []
    # The next chunk is read and this one saved on threads while a chunk is encoded: the device
    # waits neither for the collection's parser nor for the disk (a chunk of 100k BGE-M3 vectors
    # is 400 MB). The bar is closed on an error too: left open, it prints when it is collected,
    # long after (after pytest's summary, in the tests).
    with concurrent.futures.ThreadPoolExecutor(1) as saver, \
            tqdm(total=total, unit="doc", desc=f"{desc} (shard {i}/{n})", mininterval=5,
                 disable=not log.isEnabledFor(logging.INFO)) as progress:
        saving = None
        try:
            for k, batch in enumerate(_read_ahead(iter(docs), chunk_docs)):
                progress.update(len(batch))
                part = part_path(parts, k)
                if k % n != i or part.is_file():
                    continue
                claim = _claim(parts, k)
                if claim is None:
                    claimed.append(k)
                    continue
                try:
                    if part.is_file():  # saved by the job that held it until now
                        _release(claim, parts, k)
                        continue
                    arrays = encode([d["text"] for d in batch], k)
                    if saving is not None:
                        saving.result()  # a failed save fails the job here
                except BaseException:
                    os.close(claim)
                    raise
                saving = saver.submit(_save, parts, k, np.array([d["docno"] for d in batch]),
                                      arrays, claim)
                encoded += len(batch)
        finally:
            if saving is not None:
                saving.result()
    return k + 1, encoded, claimed


def _read_ahead(docs, size):
    """Lists of ``size`` items of ``docs``, the next one read on a thread meanwhile."""
    def read():
        return list(itertools.islice(docs, size))
    with concurrent.futures.ThreadPoolExecutor(1) as reader:
        pending = reader.submit(read)
        while batch := pending.result():
            pending = reader.submit(read)
            yield batch


def part_path(parts, k):
    return parts / f"part-{k:06d}.npz"


def _save(parts, k, docnos, arrays, claim):
    """Save chunk k, then release its claim."""
    try:
        with atomic_path(part_path(parts, k)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, docnos=docnos, **arrays)
    finally:
        _release(claim, parts, k)


def _release(claim, parts, k):
    """Release the claim of chunk k; its file is deleted once the chunk is saved (a job that
    locks the deleted file, or a new one, finds the chunk saved)."""
    if part_path(parts, k).is_file():
        (parts / f"claim-{k:06d}").unlink(missing_ok=True)
    os.close(claim)


def _saved_after_claim(parts, k):
    """Wait until no job holds chunk k claimed; whether it is saved."""
    _release(_claim(parts, k, block=True), parts, k)
    return part_path(parts, k).is_file()


def missing_chunks(index_dir):
    """Chunk numbers not yet encoded, or None while no shard has counted the chunks."""
    parts = parts_dir(index_dir)
    counts = {int(p.read_text()) for p in parts.glob("shard-*.done")}
    if not counts:
        return None
    if len(counts) > 1:
        raise UserError(f"{parts}: shards disagree on the number of chunks {sorted(counts)}; "
                        "were they run on different collections or chunk sizes?")
    return [k for k in range(counts.pop()) if not part_path(parts, k).is_file()]


def complete_parts(index_dir):
    """The chunk files of an index, in order, once every one is there (else an error)."""
    missing = missing_chunks(index_dir)
    if missing is None or missing:
        raise UserError(f"cannot merge {index_dir}: chunks "
                        f"{'not counted yet' if missing is None else missing[:10]} are missing; "
                        "run the remaining shards first")
    return sorted(parts_dir(index_dir).glob("part-*.npz"))
