"""``--dtype``: the numeric precision of inference, one name in the scripts, the encoders and the
re-ranker, the index metadata and the run files.

auto = bf16 on a GPU (the fast path), fp32 on a CPU; fp32 is the paper's precision; fp8 (opt-in)
runs the linear layers as fp8 products (crossvariety.fp8) on GPUs with fp8 tensor cores, and
emulates them elsewhere (slow; for measuring what fp8 does to a ranking). What bf16 and fp8 cost
against fp32, measured, is in the README (``benchmarks/bench_precision.py``).
"""
import logging

import torch

from . import fp8
from .errors import UsageError

log = logging.getLogger(__name__)
NAMES = ("auto", "bf16", "fp32", "fp8")
WEIGHTS = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp8": torch.bfloat16}


def resolve(name, device):
    """The precision ``name`` means on ``device``: bf16, fp32 or fp8."""
    if name not in NAMES:
        raise UsageError(f"--dtype {name!r}: choose {', '.join(NAMES)}")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name == "fp8" and not fp8.supported(device):
        log.warning("--dtype fp8 on %s, which has no fp8 tensor cores: emulated (slow)", device)
    return name


def prepare(model, name, device):
    """A model loaded with ``WEIGHTS[name]``, on ``device`` for inference in precision ``name``."""
    model = model.to(device).eval()
    if name == "fp8":
        fp8.convert(model)
    return model
