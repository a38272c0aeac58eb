"""Length-sorted, token-budget batching of tokenised inputs, shared by the encoder and re-ranker.

A stream of texts is tokenised in chunks on a background thread (the fast tokenizers release
the GIL), so that tokenisation overlaps the model's work; each chunk is sorted by length, longest
first, and cut into batches whose padded size stays under a token budget. Padding is masked, so
an input's result does not depend on its batch-mates.
"""
import concurrent.futures

import numpy as np
import torch


def tokenized_chunks(tokenize, items, chunk):
    """Yield (offset, token id lists, lengths) for consecutive chunks of ``items``; the next
    chunk is tokenised while the caller works on the current one."""
    if not len(items):
        return
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        pending = thread.submit(tokenize, items[:chunk])
        for offset in range(0, len(items), chunk):
            ids = pending.result()
            if offset + chunk < len(items):
                pending = thread.submit(tokenize, items[offset + chunk:offset + 2 * chunk])
            yield offset, ids, np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))


def padded_batches(ids, lengths, pad_id, batch_tokens, device, max_batch=None):
    """Yield (positions, input_ids, attention_mask) over ``ids`` sorted longest first, each batch
    padded to its longest input (to a multiple of 8 on a GPU) and holding at most
    ``batch_tokens`` padded tokens (and ``max_batch`` inputs)."""
    multiple = 8 if device.type == "cuda" else 1  # tensor-core friendly shapes
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < len(order):
        longest = int(-(-lengths[order[start]] // multiple) * multiple)
        size = max(1, batch_tokens // longest)
        batch = order[start:start + min(size, max_batch or size)]
        input_ids = np.full((len(batch), longest), pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        for row, i in enumerate(batch):
            input_ids[row, :lengths[i]] = ids[i]
            mask[row, :lengths[i]] = 1
        input_ids, mask = torch.from_numpy(input_ids), torch.from_numpy(mask)
        if device.type == "cuda":
            input_ids, mask = input_ids.pin_memory(), mask.pin_memory()
        yield (torch.from_numpy(batch).to(device, non_blocking=True),
               input_ids.to(device, non_blocking=True), mask.to(device, non_blocking=True))
        start += len(batch)


def default_device(device=None):
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
