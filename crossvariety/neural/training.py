"""What the three trainers share: their processes (one, or several under torchrun), a seeded data
order that a resumed run replays, static padded shapes, and the settings that make a small
training step cheap on a GPU.

A step at the recipes' batch sizes (8 queries for BGE-M3, 4-32 pairs for mT5) does little GPU
work and thousands of kernel launches: measured on an H200 (../shared/bench-reference/), the CPU
that launches them is the bottleneck, ~10x the GPU time. So on a GPU the encoder is compiled with
CUDA graphs (a step replays its recorded kernels in one launch), which needs a few static shapes:
inputs are padded to a multiple of ``PAD_MULTIPLE`` tokens (masked, so no loss or gradient
changes beyond float rounding). torch's cuDNN attention is turned off (batching.no_cudnn_attention). Without CUDA graphs (a CPU, --compile off) inputs are
padded to the batch's longest, as the references do: padding is then only lost work.
"""
import functools

import numpy as np
import torch

from . import compiling
from .ranks import join as processes  # noqa: F401  (device, rank, world); NCCL on GPUs

PAD_MULTIPLE = 64  # few distinct shapes (<= 4 for 256-token passages): few graphs to record


@functools.lru_cache(maxsize=2)
def epoch_order(seed, epoch, n):
    """The order of ``n`` training items in epoch ``epoch``: a permutation seeded by seed + epoch,
    so a resumed run sees exactly the batches the killed one would have."""
    return np.random.default_rng(seed + epoch).permutation(n)


def padded_length(longest, maximum, multiple=PAD_MULTIPLE):
    """The static length a batch whose longest input has ``longest`` tokens is padded to."""
    return min(maximum, -(-longest // multiple) * multiple)


def pad(id_lists, length, pad_id):
    """(input_ids, attention_mask) int64 arrays of shape (len(id_lists), length)."""
    ids = np.full((len(id_lists), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(id_lists), length), dtype=np.int64)
    for row, i in enumerate(id_lists):
        ids[row, :len(i)], mask[row, :len(i)] = i, 1
    return ids, mask


def compile_module(module, setting, device, backend="inductor"):
    """Compile ``module`` in place (its parameters and state dict stay as they are) when
    ``setting`` is on, or auto on a GPU: CUDA graphs there, plain inductor code on a CPU. Returns
    whether CUDA graphs are used, in which case every step must begin with
    ``torch.compiler.cudagraph_mark_step_begin()``."""
    if compiling.check(setting) == "off" or (setting == "auto" and device.type != "cuda"):
        return False
    graphs = device.type == "cuda" and backend == "inductor"
    # the padded lengths are few, but the recipes' batch shapes come on top: room to record them
    compiling.allow_recompiles()
    module.compile(backend=backend, fullgraph=True,
                   **({"mode": "reduce-overhead"} if graphs else {}))
    return graphs


def log_window(step, every, total):
    """Steps in the log window that ends at ``step``: ``every``, or fewer at the run's last
    step; 0 when no log line is due."""
    if step % every == 0:
        return every
    return step % every if step == total else 0


def window_mean(losses, steps, world=1):
    """The mean loss of a log window (``losses``: summed on the device over ``steps`` steps),
    averaged over the processes; resets ``losses``. The one host sync of a log line."""
    if world > 1:
        torch.distributed.all_reduce(losses)
        losses /= world
    mean = losses.item() / steps
    losses.zero_()
    return mean


def stop_due(stop_after, job_steps, step, total):
    """Whether --stop-after ends this job now (checkpointed; never at the run's last step)."""
    return bool(stop_after) and job_steps == stop_after and step < total
