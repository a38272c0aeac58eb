"""``--dtype``: the numeric precision of inference, one name in the scripts, the encoders and the
re-ranker, the index metadata and the run files.

auto = bf16 on a GPU (the fast path), fp32 on a CPU; fp32 is the paper's precision; fp8 (opt-in)
runs the linear layers as fp8 products (crossvariety.neural.fp8) on GPUs with fp8 tensor cores, and
emulates them elsewhere (slow; for measuring what fp8 does to a ranking). What bf16 and fp8 cost
against fp32, measured, is in the README (``benchmarks/bench_precision.py``). torch is imported
only when a precision is resolved: a BM25 run never loads it.
"""
import functools
import logging

from ..errors import UsageError

log = logging.getLogger(__name__)
NAMES = ("auto", "bf16", "fp32", "fp8")


def check(name):
    """``name`` if it is a precision, else a usage error (before any work)."""
    if name not in NAMES:
        raise UsageError(f"--dtype {name!r}: choose {', '.join(NAMES)}")
    return name


@functools.cache
def resolve(name, device=None):
    """The precision ``name`` means on ``device`` (default: a GPU if there is one): bf16, fp32
    or fp8. Cached: a run script asks once per model, and warns once."""
    from . import fp8
    from .batching import default_device
    device = device if device is not None else default_device()
    if check(name) == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name == "fp8" and not fp8.supported(device):
        log.warning("--dtype fp8 on %s, which has no fp8 tensor cores: emulated (slow)", device)
    return name


def weights(name):
    """The torch dtype of the weights of a model in precision ``name`` (fp8 converts from bf16)."""
    import torch
    return torch.float32 if name == "fp32" else torch.bfloat16


def prepare(model, name, device, fp8_part=None):
    """A model loaded with ``weights(name)``, on ``device`` for inference in precision ``name``;
    fp8 converts the linear layers of ``fp8_part`` (default: the whole model)."""
    from . import fp8
    model = model.to(device).eval()
    if name == "fp8":
        fp8.convert(model if fp8_part is None else fp8_part)
    return model
