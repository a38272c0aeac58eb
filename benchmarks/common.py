"""What the benchmarks share: the machine they ran on, device syncs, and results that are written
to their JSON file as they come, so that a benchmark stopped at a time limit (benchmarks/gpu_suite.py
gives each part one) keeps what it had measured."""
import json
import os
import platform
import time
from pathlib import Path

import torch

GPU = torch.cuda.is_available()
# bf16 dense matmul measured on an H100 (../shared/bench-reference; an H200 is the same chip)
BF16_PEAK = 798e12


def environment():
    """The device, its software and the date, for the head of a results file."""
    return {"device": torch.cuda.get_device_name() if GPU else
            f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "
            "threads)", "torch": torch.__version__, "cuda": torch.version.cuda,
            "date": time.strftime("%Y-%m-%d")}


def sync():
    if GPU:
        torch.cuda.synchronize()


def error_text(error):
    return f"{type(error).__name__}: {error}"[:2000]


class Results(dict):
    """A benchmark's results (the environment first), rewritten to ``out`` (when given) at every
    assignment. Nested records are assigned whole, once measured."""

    def __init__(self, out="", **fields):
        super().__init__(environment(), **fields)
        self.out = Path(out) if out else None
        self.save()

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.save()

    def update(self, *args, **fields):
        super().update(*args, **fields)
        self.save()

    def save(self):
        if self.out:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            partial = self.out.with_name(f".partial-{os.getpid()}.{self.out.name}")
            partial.write_text(json.dumps(self, indent=1))
            # a reader never sees half a file (crossvariety.runs.atomic_path does the same, but
            # would import pyterrier into every benchmark)
            os.replace(partial, self.out)

    def finish(self):
        print(json.dumps(self, indent=1))
