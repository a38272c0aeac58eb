"""Token ids as flat arrays, from the Rust tokenizer, on a thread or in worker processes.

transformers' fast tokenizers run their Rust encoder without the GIL, then build Python lists
and dicts for every text while holding it: measured on an H200 host, that part is most of the
2.6 s that 40k re-ranking pairs took to tokenise, and on a thread it competes for the GIL with
the thread that launches the GPU's work. ``FlatTokenizer`` calls the same Rust tokenizer (the
same ids: the settings transformers passes to it are copied) and returns one int32 array of
every id plus the lengths; ``Workers`` runs it in separate processes (``python -m
crossvariety.neural.tokens``, so a stage script is never re-imported the way multiprocessing's spawn
would re-run it), which leaves the main process a few microseconds of work per text.
"""
import itertools
import os
import pickle
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class Tokens(NamedTuple):
    """Token ids of n texts: ``ids`` (int32, every text's ids one after the other) and
    ``lengths`` (int64, n)."""
    ids: np.ndarray
    lengths: np.ndarray

    @property
    def starts(self):
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    def __len__(self):
        return len(self.lengths)

    def lists(self):
        """The ids of each text as a list (for tests and small jobs)."""
        return [row.tolist() for row in np.split(self.ids, np.cumsum(self.lengths)[:-1])] \
            if len(self) else []


def from_lists(id_lists):
    """Tokens from a list of id lists."""
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    ids = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int32,
                      count=int(lengths.sum()))
    return Tokens(ids, lengths)


class FlatTokenizer:
    """texts -> Tokens: a transformers fast tokenizer's Rust tokenizer, truncating to
    ``max_length`` ids as ``tokenizer(texts, truncation=True, max_length=...,
    add_special_tokens=...)`` does, with ``suffix`` ids appended to every text. With a
    ``template`` (``"Query: {} Document: {}"``) the items are tuples formatted into it. Picklable
    (the tokenizer travels as its JSON), so that worker processes can rebuild it."""

    def __init__(self, tokenizer, max_length, add_special_tokens=True, suffix=(), template=None):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer")
        self.spec = dict(json=tokenizer.backend_tokenizer.to_str(), max_length=int(max_length),
                         add_special_tokens=bool(add_special_tokens), suffix=list(suffix),
                         direction=tokenizer.truncation_side, template=template)
        self._backend = None

    def __getstate__(self):
        return {"spec": self.spec, "_backend": None}

    @property
    def backend(self):
        if self._backend is None:
            from tokenizers import Tokenizer
            backend = Tokenizer.from_str(self.spec["json"])
            backend.no_padding()
            # what transformers' set_truncation_and_padding passes for truncation=True
            backend.enable_truncation(self.spec["max_length"], stride=0,
                                      strategy="longest_first", direction=self.spec["direction"])
            self._backend = backend
        return self._backend

    def __call__(self, texts):
        template = self.spec["template"]
        texts = [template.format(*item) for item in texts] if template else list(texts)
        encodings = self.backend.encode_batch(texts,
                                              add_special_tokens=self.spec["add_special_tokens"])
        suffix = self.spec["suffix"]
        ids = [e.ids + suffix for e in encodings] if suffix else [e.ids for e in encodings]
        return from_lists(ids)


# ----------------------------------------------------------------------------- workers

class WorkerError(RuntimeError):
    pass


def _send(stream, message):
    pickle.dump(message, stream, protocol=pickle.HIGHEST_PROTOCOL)
    stream.flush()


class Workers:
    """``tokenize`` (a picklable callable: texts -> Tokens) in ``n`` worker processes. Calling
    the pool tokenises on the next free worker; it is safe from several threads at once (one
    call per worker at a time). ``close()`` (or the end of a ``with`` block) stops them; they
    also stop when this process ends, as their input closes."""

    def __init__(self, tokenize, n, threads_per_worker=None):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                if p]))
        if threads_per_worker:  # the Rust tokenizer's own thread pool, per worker
            env["RAYON_NUM_THREADS"] = str(threads_per_worker)
        self.procs = []
        self.free = queue.Queue()
        try:
            for _ in range(n):
                # started in the repository: ``-m`` puts the working directory first on the path
                proc = subprocess.Popen([sys.executable, "-m", "crossvariety.neural.tokens"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=env, cwd=REPO_ROOT)
                self.procs.append(proc)
                # stderr drained on a thread: a worker that logs a lot never blocks on it
                proc.stderr_tail = []
                threading.Thread(target=self._drain, args=(proc,), daemon=True).start()
                _send(proc.stdin, tokenize)
                self.free.put(proc)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _drain(proc):
        for line in proc.stderr:
            proc.stderr_tail = (proc.stderr_tail + [line.decode(errors="replace")])[-20:]

    def __call__(self, texts):
        proc = self.free.get()
        try:
            try:
                _send(proc.stdin, list(texts))
                status, payload = pickle.load(proc.stdout)
            except (EOFError, BrokenPipeError, pickle.UnpicklingError):
                proc.wait(timeout=10)
                raise WorkerError(f"a tokenizer worker process ended (exit status "
                                  f"{proc.returncode}): {''.join(proc.stderr_tail)[-2000:]}") \
                    from None
            if status == "error":
                raise WorkerError(f"a tokenizer worker failed:\n{payload}")
            return Tokens(*payload)
        finally:
            self.free.put(proc)

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve():
    """A worker: read the tokenize callable, then lists of texts until the input closes;
    answer each with ("ok", Tokens) or ("error", traceback)."""
    import traceback
    from ..errors import ignore_interrupts
    ignore_interrupts()  # Ctrl-C is the main process's; a worker ends when its input closes
    stdin = sys.stdin.buffer
    # the answers get their own copy of stdout; anything a library prints goes to stderr
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    tokenize = pickle.load(stdin)
    while True:
        try:
            texts = pickle.load(stdin)
        except EOFError:
            return
        try:
            _send(stdout, ("ok", tuple(tokenize(texts))))
        except Exception:
            _send(stdout, ("error", traceback.format_exc()))


if __name__ == "__main__":
    _serve()
