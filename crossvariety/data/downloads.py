"""Downloaded files, verified.

A file fetched here gets its SHA-256 written beside it, ``{file}.sha256`` in the format of
``sha256sum`` (so ``sha256sum -c file.sha256`` checks it too), and is checked against that record
whenever it is used again: a truncated, damaged or replaced file is an error naming it, not a
wrong result. Where the publisher states a checksum, the download is checked against it before
it is kept: the Hugging Face hub states the SHA-256 of its large (LFS) files in the
``X-Linked-Etag`` header of a ``resolve`` URL, and names each file of its local cache by its
checksum (the SHA-256, or the git blob SHA-1 of a small file).

A file the user put in place has no record and is used as it is; a folder of several files
(FLORES-200) is checked against a ``SHA256SUMS`` file in it.
"""
import hashlib
import logging
import os
import re
import time
import urllib.request
from pathlib import Path

from ..errors import UserError
from ..runs import atomic_path

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MANIFEST = "SHA256SUMS"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")


def sha256(path):
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path):
    """The git blob id of a file (SHA-1 of ``blob {size}\\0`` and the bytes), in hex."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sidecar(path):
    """Where the SHA-256 of ``path`` is recorded: ``{path}.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def record(path, digest):
    """Write ``digest`` as the SHA-256 of ``path`` beside it (atomically)."""
    with atomic_path(sidecar(path)) as tmp:
        tmp.write_text(f"{digest}  {Path(path).name}\n", encoding="utf-8")


def recorded(path):
    """The SHA-256 recorded beside ``path``, or None when there is no record."""
    side = sidecar(path)
    if not side.is_file():
        return None
    fields = side.read_text(encoding="utf-8", errors="replace").split()
    if not fields or not _SHA256.fullmatch(fields[0].lower()):
        raise UserError(f"{side}: not a SHA-256 record (a line '<64 hex digits>  "
                        f"{Path(path).name}'); delete it and {Path(path).name} to fetch the file "
                        "again")
    return fields[0].lower()


def _mismatch(path, got, expected, where, fix, what="the file is damaged or was replaced"):
    return UserError(f"{path}: its SHA-256 is {got[:16]}..., not {expected[:16]}... as {where}; "
                     f"{what}: {fix}")


def check(path):
    """``path``, after checking it against the SHA-256 recorded beside it (if there is one)."""
    expected = recorded(path)
    if expected is None:
        return Path(path)
    start = time.time()
    got = sha256(path)
    if got != expected:
        raise _mismatch(path, got, expected, f"recorded in {sidecar(path).name} when it was "
                        "downloaded", f"delete it and {sidecar(path).name} to fetch it again")
    log.info("%s: SHA-256 as recorded when downloaded (checked in %.1fs)", path,
             time.time() - start)
    return Path(path)


class _PublisherChecksum(urllib.request.HTTPRedirectHandler):
    """Keeps the SHA-256 that a Hugging Face ``resolve`` URL states for an LFS file: the
    ``X-Linked-Etag`` header of its redirect (or of the answer itself)."""

    def __init__(self):
        self.sha256 = None

    def note(self, headers):
        etag = (headers.get("X-Linked-Etag") or "").strip().strip('"').lower()
        if self.sha256 is None and _SHA256.fullmatch(etag):
            self.sha256 = etag

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.note(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url, path):
    """Download ``url`` to ``path`` atomically; check it against the checksum the server states
    (if it states one); record its SHA-256 beside it. Returns the SHA-256.
    A file that fails the check is not kept; a failed download raises its OSError."""
    path = Path(path)
    publisher = _PublisherChecksum()
    start = time.time()
    log.info("downloading %s to %s", url, path)
    with atomic_path(path) as tmp:
        digest, size = hashlib.sha256(), 0
        with urllib.request.build_opener(publisher).open(url, timeout=60) as response, \
                open(tmp, "wb") as out:
            publisher.note(response.headers)
            while block := response.read(CHUNK):
                digest.update(block)
                out.write(block)
                size += len(block)
        got = digest.hexdigest()
        expected = publisher.sha256
        if expected and got != expected:
            raise _mismatch(url, got, expected, "its publisher states", "nothing was kept: "
                            "run again, or download it yourself and pass its path",
                            "damaged on the way, or the file changed upstream")
        record(path, got)  # before the file is in place: a downloaded file never lacks one
    log.info("downloaded %s (%.1f MB, SHA-256 %s%s) in %.1fs", path, size / 1e6, got,
             ", as its publisher states" if expected else "", time.time() - start)
    return got


def local_copy(path, url):
    """The file at ``path``: checked against the SHA-256 recorded when it was downloaded, or
    downloaded from ``url`` first if it is missing."""
    path = Path(path)
    if path.is_file():
        return check(path)
    if sidecar(path).is_file():
        sidecar(path).unlink()  # the record of a file deleted to fetch it again
    try:
        fetch(url, path)
    except OSError as e:
        raise UserError(f"{path} is missing and could not be downloaded from {url} ({e}); "
                        "download it elsewhere and put it there, or pass its path") from None
    return path


def check_hub_file(path):
    """A file of the Hugging Face cache (``hf_hub_download``'s path), checked against the
    checksum the cache names its blob by: the SHA-256 of an LFS file, the git blob SHA-1 of a
    small one. huggingface_hub itself checks only a download's size, and nothing once cached.
    Where the cache holds plain copies (no symlinks), a record beside the file is kept instead."""
    path = Path(path)
    blob = path.resolve()
    etag = blob.name.lower()
    start = time.time()
    if _SHA256.fullmatch(etag):
        got = sha256(blob)
    elif _SHA1.fullmatch(etag):
        got = git_blob_sha1(blob)
    else:
        if recorded(path) is None:
            record(path, sha256(path))
        return check(path)
    if got != etag:
        raise _mismatch(path, got, etag, "the Hugging Face cache names it (its hub checksum)",
                        f"delete {blob} to fetch it again")
    log.info("%s: matches its hub checksum (checked in %.1fs)", path, time.time() - start)
    return path


def write_manifest(folder, names):
    """Record the SHA-256 of the files ``names`` of ``folder`` in ``folder/SHA256SUMS``."""
    folder = Path(folder)
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_text("".join(f"{sha256(folder / name)}  {name}\n" for name in sorted(names)),
                       encoding="utf-8")


def check_manifest(folder, names, fix):
    """Check the files ``names`` of ``folder`` against its SHA256SUMS, if it has one (a folder
    this project downloaded); ``fix`` says how to fetch them again."""
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        return
    listed = {}
    for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        listed[name.strip()] = digest.strip().lower()
    for name in names:
        if name not in listed:
            raise UserError(f"{Path(folder) / name}: not listed in {manifest}, which records the "
                            f"files downloaded there; {fix}")
        got = sha256(Path(folder) / name)
        if got != listed[name]:
            raise _mismatch(Path(folder) / name, got, listed[name],
                            f"recorded in {manifest} when it was downloaded", fix)
