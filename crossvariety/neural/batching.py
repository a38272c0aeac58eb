"""Length-sorted, token-budget batching of tokenised inputs, shared by the encoders and re-ranker.

A stream of texts is tokenised in chunks ahead of the model (crossvariety.neural.tokens: flat id
arrays), on a thread or, for large jobs on a GPU, in worker processes, so that tokenisation
overlaps the model's work and does not compete with the launching thread for the GIL; the
first chunks are small, so that the model starts after a moment rather than after a whole
chunk's tokenisation. Each chunk is sorted by length, longest first, and cut into batches whose
padded size stays under a token budget. Padding is masked, so an input's result does not depend
on its batch-mates or its chunk.
"""
import atexit
import concurrent.futures
import logging
import os
from typing import NamedTuple

import numpy as np
import torch

from . import tokens as tokens_module
from ..errors import UsageError

log = logging.getLogger(__name__)
FIRST_CHUNK = 2048  # items tokenised before the model starts; chunks then double up to ``chunk``
# Worker processes cost ~0.5 s to start: worth it for long jobs only (a query set of 6,980 is
# tokenised in-thread in a fraction of a second).
WORKERS_MIN_ITEMS = 16384


def chunk_bounds(n, chunk, first=FIRST_CHUNK):
    """(start, end) of consecutive chunks of n items: first, 2 x first, ... up to ``chunk``."""
    bounds, start, size = [], 0, min(first, chunk)
    while start < n:
        bounds.append((start, min(start + size, n)))
        start, size = start + size, min(2 * size, chunk)
    return bounds


def worker_count(setting, device):
    """Tokenizer worker processes for ``setting`` (an int, or "auto": on a GPU a quarter of the
    cores, at most 4; none on a CPU, whose cores run the model)."""
    if setting in (None, "auto"):
        if torch.device(device).type != "cuda":
            return 0
        return max(1, min(4, (os.cpu_count() or 4) // 4))
    try:
        count = int(setting)
    except (TypeError, ValueError):
        count = -1
    if count < 0:
        raise UsageError(f"--tokenizer-workers {setting!r}: a number of processes (0 = none) "
                         "or auto")
    return count


class ChunkTokenizer:
    """``tokenize`` (texts -> tokens.Tokens) over consecutive chunks of a list, ahead of the
    caller: on one thread, or in ``workers`` worker processes (started at the first long job,
    kept for the next ones) that tokenise several chunks at once."""

    def __init__(self, tokenize, chunk, workers=0):
        self.tokenize, self.chunk, self.workers = tokenize, chunk, workers
        self._pool = None

    def pool(self):
        if self._pool is None:
            cores = os.cpu_count() or 2
            self._pool = tokens_module.Workers(self.tokenize, self.workers,
                                               threads_per_worker=max(1, cores // 2 // self.workers))
            atexit.register(self._pool.close)
            log.info("tokenising in %d worker processes", self.workers)
        return self._pool

    def chunks(self, items):
        """Yield (offset, Tokens) for consecutive chunks of ``items``."""
        bounds = chunk_bounds(len(items), self.chunk)
        if not bounds:
            return
        use_workers = self.workers > 0 and len(items) >= WORKERS_MIN_ITEMS
        tokenize = self.pool() if use_workers else self.tokenize
        ahead = self.workers + 1 if use_workers else 1
        with concurrent.futures.ThreadPoolExecutor(ahead) as threads:
            pending = [threads.submit(tokenize, items[s:e]) for s, e in bounds[:ahead]]
            for k, (start, _) in enumerate(bounds):
                tokens = pending[k].result()
                pending[k] = None  # the chunk is the caller's now
                if k + ahead < len(bounds):
                    s, e = bounds[k + ahead]
                    pending.append(threads.submit(tokenize, items[s:e]))
                yield start, tokens


class Batch(NamedTuple):
    positions: torch.Tensor  # [B] rows of the chunk, on the device
    input_ids: torch.Tensor  # [B, L] int64, padded on the right
    attention_mask: torch.Tensor  # [B, L] int64
    lengths: torch.Tensor  # [B] int64


def padded_batches(tokens, pad_id, batch_tokens, device, max_batch=None, multiple=None):
    """Yield Batches over ``tokens`` (a tokens.Tokens) sorted longest first, each batch padded to
    its longest input (to a multiple of ``multiple`` tokens: 8 on a GPU, tensor-core friendly
    shapes) and holding at most ``batch_tokens`` padded tokens (and ``max_batch`` inputs)."""
    multiple = multiple or (8 if device.type == "cuda" else 1)
    lengths, starts = tokens.lengths, tokens.starts
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < len(order):
        longest = int(-(-lengths[order[start]] // multiple) * multiple)
        size = max(1, batch_tokens // longest)
        batch = order[start:start + min(size, max_batch or size)]
        mask = np.arange(longest)[None, :] < lengths[batch][:, None]
        input_ids = np.full((len(batch), longest), pad_id, dtype=np.int64)
        input_ids[mask] = tokens.ids[(starts[batch][:, None] + np.arange(longest)[None, :])[mask]]
        host = [torch.from_numpy(a) for a in (batch, input_ids, mask.astype(np.int64),
                                              lengths[batch])]
        if device.type == "cuda":
            host = [t.pin_memory() for t in host]
        yield Batch(*(t.to(device, non_blocking=True) for t in host))
        start += len(batch)


def default_device(device=None):
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def no_cudnn_attention(device):
    """On a GPU, turn torch's cuDNN attention off (flash and memory-efficient attention remain):
    on Hopper torch picks it, and it sets up a plan on the CPU (~1.1 ms) for every new padded
    shape, which length-sorted batches meet in almost every batch (measured on an H200:
    BGE-M3 encoding 5,067 -> 5,702 passages/s; training steps 1.45x faster)."""
    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)
