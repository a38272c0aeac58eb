"""Indexing in chunks, resumable and shardable, for every neural index (dense.py, plaid.py).

A collection is encoded in chunks of documents, each saved under {index}.parts/ when encoded,
so a killed job resumes at its first missing chunk and n jobs (--shard i/n) can split the
chunks (chunk k belongs to shard k mod n). The shard that finds every chunk encoded merges them
into the index, which appears only when complete.
"""
import concurrent.futures
import itertools
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .errors import UsageError, UserError
from .runs import atomic_path

log = logging.getLogger(__name__)


def parts_dir(index_dir):
    return Path(f"{index_dir}.parts")


def parse_shard(shard):
    match = re.fullmatch(r"(\d+)/(\d+)", shard or "0/1")
    if not match or not int(match[1]) < int(match[2]):
        raise UsageError(f"--shard {shard!r}: write i/n with 0 <= i < n, e.g. 0/4")
    return int(match[1]), int(match[2])


def encode_chunks(docs, encode, index_dir, meta, shard="0/1", chunk_docs=100_000, total=None,
                  desc="index"):
    """Save this shard's chunks of ``docs`` ({"docno", "text"}) under {index}.parts/ as
    part-NNNNNN.npz, skipping chunks already there: ``encode(texts, k)`` gives the chunk's
    arrays, saved with its docnos. ``meta`` goes to {index}.parts/meta.json. Returns the number
    of chunks of the whole collection."""
    i, n = parse_shard(shard)
    parts = parts_dir(index_dir)
    parts.mkdir(parents=True, exist_ok=True)
    meta = json.loads(json.dumps(dict(meta, chunk_docs=chunk_docs)))  # as it reads back
    if (parts / "meta.json").is_file():  # chunks of another model or precision must not mix
        before = json.loads((parts / "meta.json").read_text())
        changed = sorted(key for key in meta.keys() | before.keys()
                         if meta.get(key) != before.get(key))
        if changed:
            raise UserError(f"{parts} holds chunks encoded with other settings ("
                            + ", ".join(f"{key}: {before.get(key)!r}, now {meta.get(key)!r}"
                                        for key in changed)
                            + "): pass the same settings, or --overwrite to start again")
    (parts / "meta.json").write_text(json.dumps(meta, indent=1))
    start, encoded, k = time.time(), 0, -1
    docs = iter(docs)
    # The next chunk is read and this one saved on threads while a chunk is encoded: the device
    # waits neither for the collection's parser nor for the disk (a chunk of 100k BGE-M3 vectors
    # is 400 MB). The bar is closed on an error too: left open, it prints when it is collected,
    # long after (after pytest's summary, in the tests).
    with concurrent.futures.ThreadPoolExecutor(1) as saver, \
            tqdm(total=total, unit="doc", desc=f"{desc} (shard {i}/{n})", mininterval=5,
                 disable=not log.isEnabledFor(logging.INFO)) as progress:
        saving = None
        for k, batch in enumerate(_read_ahead(docs, chunk_docs)):
            progress.update(len(batch))
            part = parts / f"part-{k:06d}.npz"
            if k % n != i or part.is_file():
                continue
            arrays = encode([d["text"] for d in batch], k)
            if saving is not None:
                saving.result()  # a failed save fails the job here
            saving = saver.submit(_save, part, np.array([d["docno"] for d in batch]), arrays)
            encoded += len(batch)
        if saving is not None:
            saving.result()
    chunks = k + 1
    (parts / f"shard-{i}-of-{n}.done").write_text(str(chunks))
    seconds = time.time() - start
    log.info("shard %d/%d: encoded %d documents in %.1fs (%.0f docs/s); %d chunks in all", i, n,
             encoded, seconds, encoded / max(seconds, 1e-9), chunks)
    return chunks


def _read_ahead(docs, size):
    """Lists of ``size`` items of ``docs``, the next one read on a thread meanwhile."""
    def read():
        return list(itertools.islice(docs, size))
    with concurrent.futures.ThreadPoolExecutor(1) as reader:
        pending = reader.submit(read)
        while batch := pending.result():
            pending = reader.submit(read)
            yield batch


def _save(part, docnos, arrays):
    with atomic_path(part) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, docnos=docnos, **arrays)


def missing_chunks(index_dir):
    """Chunk numbers not yet encoded, or None while no shard has counted the chunks."""
    parts = parts_dir(index_dir)
    counts = {int(p.read_text()) for p in parts.glob("shard-*.done")}
    if not counts:
        return None
    if len(counts) > 1:
        raise UserError(f"{parts}: shards disagree on the number of chunks {sorted(counts)}; "
                        "were they run on different collections or chunk sizes?")
    return [k for k in range(counts.pop()) if not (parts / f"part-{k:06d}.npz").is_file()]


def complete_parts(index_dir):
    """The chunk files of an index, in order, once every one is there (else an error)."""
    missing = missing_chunks(index_dir)
    if missing is None or missing:
        raise UserError(f"cannot merge {index_dir}: chunks "
                        f"{'not counted yet' if missing is None else missing[:10]} are missing; "
                        "run the remaining shards first")
    return sorted(parts_dir(index_dir).glob("part-*.npz"))


def merge_if_complete(index_dir, merge):
    """``merge(index_dir)`` once every chunk is encoded; True when the index is complete."""
    missing = missing_chunks(index_dir)
    if missing:
        log.info("%d chunks of %s are left to other shards; merge when they are done",
                 len(missing), index_dir)
        return False
    merge(index_dir)
    return True
