"""torch.compile for the inference paths (the re-ranker, the dense encoder): when, and what if
it fails.

Compiling fuses the elementwise work between the matmuls (norms, activations, residuals; the
re-ranker's relative position bias inside FlexAttention) into few kernels, and launches them
with less CPU work per kernel. It costs tens of seconds once per process, so ``auto`` compiles
on a GPU for long jobs only (``MIN_ITEMS`` inputs or more in one call: an index chunk, a
query set's re-ranking); ``on`` always, ``off`` never. Shapes are dynamic (one graph for every
batch shape); a batch of one is run as two copies of itself, which would otherwise compile a
second graph. A compiler that fails at its first call is reported and the job goes on without
it.
"""
import logging
import time

import torch

from ..errors import UsageError

log = logging.getLogger(__name__)
SETTINGS = ("auto", "on", "off")
MIN_ITEMS = 50_000


def check(setting):
    if setting not in SETTINGS:
        raise UsageError(f"--compile {setting!r}: choose {', '.join(SETTINGS)}")
    return setting


def allow_recompiles(limit=32):
    """Room for the graphs of a few shapes (dynamo's default recompile limit is 8)."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)


class Compiler:
    """Calls ``module(*tensors, **eager)`` or its compiled version with ``**compiled`` keyword
    arguments (the tensors' first dimension is the batch). ``backend``: torch.compile's (the
    tests use aot_eager: the same graph capture without generating code)."""

    def __init__(self, module, setting, device, name, eager=None, compiled=None,
                 backend="inductor"):
        self.module, self.setting, self.device, self.name = module, check(setting), device, name
        self.eager, self.compiled, self.backend = eager or {}, compiled or {}, backend
        self._fn = None
        self.working = None  # None until the first compiled call, then whether it compiled

    def wanted(self, items):
        if self.working is False or self.setting == "off":
            return False
        return self.setting == "on" or (self.device.type == "cuda" and items >= MIN_ITEMS)

    def for_job(self, items):
        """The callable to use for a job of ``items`` inputs."""
        if self.wanted(items):
            return self._call_compiled
        return lambda *tensors: self.module(*tensors, **self.eager)

    def _call_compiled(self, *tensors):
        if self.working is False:
            return self.module(*tensors, **self.eager)
        if self._fn is None:
            allow_recompiles()  # dynamic shapes still guard on a few value ranges
            self._fn = torch.compile(self.module, dynamic=True, fullgraph=True,
                                     backend=self.backend)
        rows = tensors[0].shape[0]
        doubled = [torch.cat([t, t]) for t in tensors] if rows == 1 else tensors
        if self.working:
            return self._fn(*doubled, **self.compiled)[:rows]
        start = time.time()
        try:
            out = self._fn(*doubled, **self.compiled)[:rows]
        except Exception as error:  # a compiler that fails must not end a long job
            log.warning("torch.compile of %s failed (%s: %s); going on without it (slower)",
                        self.name, type(error).__name__, str(error).strip().splitlines()[0][:300]
                        if str(error).strip() else "")
            self.working = False
            return self.module(*tensors, **self.eager)
        self.working = True
        log.info("compiled %s in %.0fs", self.name, time.time() - start)
        return out
