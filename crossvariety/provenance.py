"""What made an index or a run file: recorded with it, compared before it is reused.

Every input is named by an identity, a short string that changes when the input changes:
- a collection: its ``irds:`` id, or for a dataset folder its documents file and the file's
  SHA-256 (``docs.tsv.gz sha256:...``): the content, not the folder's name or path;
- queries: their number and the SHA-256 of the (qid, query) pairs actually used;
- a model: a Hugging Face id at the revision in the local cache (``BAAI/bge-m3@<commit>``), or
  for a local folder the SHA-256 of its files' names, sizes and hashes (weights, tokenizer,
  config);
- a re-ranker's input: the SHA-256 of the (qid, docno) pairs it re-ranks.
A file's hash is computed once and kept in a small cache keyed by the file's path, size, mtime
and inode ($CROSSVARIETY_HASH_CACHE, default ~/.cache/crossvariety/file-hashes.json): a
multi-GB collection is hashed when it is first indexed and again only when it changes.

A run file ``X.res.gz`` has a record ``X.res.gz.json``: the recipe that made it (identities and
every setting that changes results), its depth, and the hash of the run file it describes. An
index keeps the identities of its model and collection in its own metadata file.
"""
import datetime
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)
RECORD_SUFFIX = ".json"  # X.res.gz -> X.res.gz.json
HASH_CACHE_ENV = "CROSSVARIETY_HASH_CACHE"
# files of a model folder that do not change what the model computes (training state, notes)
NOT_MODEL_FILES = ("trainer.pt", "optimizer.pt", "scheduler.pt", "trainer_state.json",
                   "training_args.bin", "README.md")


# ----------------------------------------------------------------------------- file hashes

def hash_cache_path():
    if os.environ.get(HASH_CACHE_ENV):
        return Path(os.environ[HASH_CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crossvariety" / "file-hashes.json"


@functools.cache
def _hash_cache():
    """{absolute path: [size, mtime_ns, inode, sha256]}, as read at first use."""
    try:
        return json.loads(hash_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _stat_key(path):
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _save_hash(path, key, digest):
    """Add one hash to the cache file (merged with what other processes wrote meanwhile;
    entries of files that are gone are dropped). A cache that cannot be written costs only
    time: the hash is computed again next time."""
    cache = _hash_cache()
    cache[path] = key + [digest]
    target = hash_cache_path()
    try:
        on_disk = json.loads(target.read_text()) if target.is_file() else {}
    except (OSError, ValueError):
        on_disk = {}
    merged = {p: v for p, v in {**on_disk, **cache}.items() if os.path.exists(p)}
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=".partial-",
                                         delete=False) as f:
            tmp = f.name
            json.dump(merged, f)
        os.replace(tmp, target)
    except OSError as e:
        log.debug("could not write the hash cache %s: %s", target, e)
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
    cache.clear()
    cache.update(merged)


def file_sha256(path):
    """The SHA-256 of a file's bytes, from the cache while its size, mtime and inode are
    unchanged."""
    path = str(Path(path).resolve())
    key = _stat_key(path)
    known = _hash_cache().get(path)
    if known and known[:3] == key:
        return known[3]
    start = time.time()
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    seconds = time.time() - start
    if seconds > 1:
        log.info("hashed %s (%.1f GB) in %.1fs, once: the hash is kept while the file is "
                 "unchanged", path, key[0] / 1e9, seconds)
    _save_hash(path, key, digest)
    return digest


def remember_sha256(path, digest):
    """Record ``digest`` as the hash of ``path`` (a file just written whose bytes were hashed
    under another name)."""
    path = str(Path(path).resolve())
    _save_hash(path, _stat_key(path), digest)


def _sha256_lines(lines):
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def digest(identities, length=8):
    """A short hash of identities, for a file name."""
    return _sha256_lines(map(str, identities))[:length]


def short(identity):
    """An identity for a log line: hashes cut to 12 hex digits."""
    return re.sub(r"sha256:([0-9a-f]{12})[0-9a-f]{52}", r"sha256:\1", str(identity))


# ----------------------------------------------------------------------------- identities

def collection_id(dataset):
    """``irds:<id>``, or ``<documents file> sha256:<hex>`` for a dataset folder (None when the
    folder has no documents file: reading it fails with its own error)."""
    if dataset.irds_id:
        return f"irds:{dataset.irds_id}"
    path = dataset._docs_file()
    return None if path is None else f"{path.name} sha256:{file_sha256(path)}"


def collection_files(dataset):
    """The documents file of a dataset folder, its size and mtime (for the record; the
    comparison uses the hash); {} for an irds: id."""
    path = None if dataset.irds_id else dataset._docs_file()
    return {} if path is None else file_details(path)


def file_details(*paths):
    details = {}
    for path in paths:
        stat = os.stat(path)
        details[Path(path).name] = {
            "bytes": stat.st_size,
            "mtime": datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc)
            .isoformat(timespec="seconds")}
    return details


def queries_id(queries):
    """``<n> queries sha256:<hex>`` of a (qid, query) DataFrame, whatever its row order."""
    rows = sorted(zip(queries["qid"].astype(str), queries["query"].astype(str)))
    return f"{len(rows)} queries sha256:" + _sha256_lines(f"{q}\t{t}" for q, t in rows)


def ranked_top(run, k):
    """The first ``k`` rows of each query by score, ties in file order: what a re-ranker
    reads (crossvariety.rerank.monot5.attach_text chooses them the same way)."""
    run = run.astype({"qid": str, "docno": str})
    run = run.sort_values(["qid", "score"], ascending=[True, False], kind="stable")
    return run.groupby("qid", sort=False).head(k)


def pairs_id(run):
    """``<n> pairs sha256:<hex>`` of a run's (qid, docno) pairs, in the run's order."""
    return f"{len(run)} pairs sha256:" + _sha256_lines(
        f"{q}\t{d}" for q, d in zip(run["qid"].astype(str), run["docno"].astype(str)))


def model_files(folder):
    """The files of a model folder that make what it computes: every top-level file but
    training state and notes."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file()
                  and not p.name.startswith(".") and p.name not in NOT_MODEL_FILES)


def cached_snapshot(repo):
    """The folder of an HF repository's revision in the local hub cache (the one loading
    uses), or None."""
    from huggingface_hub import try_to_load_from_cache
    for name in ("config.json", "artifact.metadata", "tokenizer_config.json"):
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str):
            return Path(found).parent
    return None


def model_id(name_or_path):
    """``<hf id>@<cached revision>`` (``@uncached`` when it is not in the local cache yet), or
    ``sha256:<hex>`` over a local folder's files (names, sizes, contents)."""
    from .models import resolve_model
    path = resolve_model(name_or_path)
    if Path(path).is_dir():
        return "sha256:" + _sha256_lines(f"{p.name}\t{p.stat().st_size}\t{file_sha256(p)}"
                                         for p in model_files(path))
    snapshot = cached_snapshot(path)
    return f"{path}@{snapshot.name if snapshot else 'uncached'}"


def tokenizer_id(model, family, tok_model=None):
    """The tokenizer a ``family`` model loads (crossvariety.models.tokenizer_source), found
    without fetching anything: ``own`` when the checkpoint ships one (its files are part of the
    model's identity), else the identity of ``tok_model`` or of the base model's tokenizer;
    ``uncached`` when the checkpoint is not in the local HF cache (nothing to compare)."""
    from .models import BASE_TOKENIZERS, has_tokenizer, resolve_model
    if tok_model:
        return model_id(tok_model)
    path = resolve_model(model)
    folder = Path(path) if Path(path).is_dir() else cached_snapshot(path)
    if folder is None:
        return "uncached"
    return "own" if has_tokenizer(folder) else model_id(BASE_TOKENIZERS[family][1])


def model_details(name_or_path):
    """The files of a local model folder, sizes and mtimes (for the record); {} for an HF id."""
    from .models import resolve_model
    path = resolve_model(name_or_path)
    return file_details(*model_files(path)) if Path(path).is_dir() else {}


# ----------------------------------------------------------------------------- comparison

def _same(before, now):
    """Equal, or one side is an HF model (or its tokenizer) that was not in the local cache
    when it was looked up: nothing says that they differ."""
    if before == now or "uncached" in (before, now):
        return True
    return isinstance(before, str) and isinstance(now, str) and "@uncached" in (before + now) \
        and before.rsplit("@", 1)[0] == now.rsplit("@", 1)[0]


def differences(recorded, current, optional=()):
    """'key: recorded -> current' for every key (nested with dots) whose value differs; keys
    in ``optional`` are compared only when ``current`` has them."""
    out = []
    for key in sorted(set(recorded) | set(current), key=str):
        if key in optional and key not in current:
            continue
        before, now = recorded.get(key), current.get(key)
        if isinstance(before, dict) and isinstance(now, dict):
            out += [f"{key}.{d}" for d in differences(before, now)]
        elif not _same(before, now):
            out.append(f"{key}: {short(before)} -> {short(now)}")
    return out


def stale_meta(meta, inputs):
    """How an index's metadata ``meta`` differs from ``inputs`` (identities and settings it
    should have been built from): a list, empty when current; None when ``meta`` lacks an
    identity (an index of an older version)."""
    if not all(key in meta for key in inputs):
        return None
    return differences({key: meta[key] for key in inputs}, inputs)


def rerank_recipe(model, run, queries, collection, top_k, dtype, tok_model=None):
    """What makes a re-ranked run: the re-ranker and its tokenizer, the (qid, docno) pairs it
    re-ranks (each query's ``top_k`` of ``run``), those queries' text, the collection's
    documents and the precision."""
    pairs = ranked_top(run, top_k)
    used = queries[queries["qid"].astype(str).isin(set(pairs["qid"]))]
    return {"stage": "rerank", "model": model_id(model),
            "tokenizer": tokenizer_id(model, "mt5", tok_model), "input": pairs_id(pairs),
            "queries": queries_id(used), "collection": collection_id(collection),
            "settings": {"dtype": dtype}}


# ----------------------------------------------------------------------------- run records

def record_path(run_file):
    return Path(f"{run_file}{RECORD_SUFFIX}")


def read_record(run_file):
    """The record of a run file, or None if it has none (a run made by an older version)."""
    path = record_path(run_file)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}  # unreadable: treated as a record of something else


def new_record(recipe, depth=None, exact_depth=False, seconds=None, script=None):
    """A run's record: ``recipe`` (identities and settings), its depth (results per query it
    was asked for) and whether a shallower request may read it truncated."""
    import sys
    return {"recipe": recipe, "depth": depth, "exact_depth": exact_depth,
            "made": {"by": script or Path(sys.argv[0]).name, "seconds": seconds}}


def write_record(run_file, record, written):
    """Write the record of ``run_file`` with the size and hash of ``written`` (the run's
    bytes, possibly still under a temporary name), atomically."""
    from .runs import atomic_path
    record = dict(record, run={"file": Path(run_file).name, "bytes": os.path.getsize(written),
                               "sha256": file_sha256(written)})
    with atomic_path(record_path(run_file)) as tmp:
        tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return record


def stale_reason(run_file, record, recipe, depth=None, exact_depth=False, optional=()):
    """Why the run at ``run_file`` with ``record`` cannot serve ``recipe`` at ``depth``, or
    None when it can (a deeper run serves a shallower request, unless ``exact_depth``)."""
    described = record.get("run") or {}
    if described.get("sha256") != file_sha256(run_file):
        return f"the file is not the one its record {record_path(run_file).name} describes"
    changed = differences(record.get("recipe") or {}, recipe, optional)
    if changed:
        return "changed " + "; ".join(changed)
    made = record.get("depth")
    if depth is not None and made != depth and (exact_depth or record.get("exact_depth")
                                                or made is None or made < depth):
        return f"made {made} deep, {depth} asked"
    return None
