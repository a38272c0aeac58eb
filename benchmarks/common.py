"""What the benchmarks share: the machine they ran on, device syncs, the random-weight models they
measure, and results that are written to their JSON file as they come, so that a benchmark
stopped at a time limit (benchmarks/gpu_suite.py gives each part one) keeps what it had measured.
"""
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch

GPU = torch.cuda.is_available()
# Where benchmarks/gpu_suite.py has its parts share the models they build (building and saving
# mT5-base or XLM-R large takes tens of seconds); unset, each benchmark builds its own.
MODEL_CACHE = "BENCH_MODEL_CACHE"
# bf16 dense matmul measured on an H100 (../shared/bench-reference; an H200 is the same chip)
BF16_PEAK = 798e12


def environment():
    """The device, its software and the date, for the head of a results file."""
    return {"device": torch.cuda.get_device_name() if GPU else
            f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "
            "threads)", "torch": torch.__version__, "cuda": torch.version.cuda,
            "date": time.strftime("%Y-%m-%d")}


def random_model(kind, size, folder, **options):
    """A model of crossvariety.neural.random_models at random weights (``kind``: mt5, xlmr or
    colbert_xm; ``size``: tiny or the real architecture's name, base or large), its tokenizer
    trained on synthetic passages; built under ``folder``, or once under $BENCH_MODEL_CACHE."""
    from crossvariety.neural import random_models
    build = {"mt5": random_models.build_mt5, "xlmr": random_models.build_xlmr,
             "colbert_xm": random_models.build_colbert_xm}[kind]
    name = "-".join([kind, size, *(f"{k}-{v}" for k, v in sorted(options.items()))])
    path = Path(os.environ.get(MODEL_CACHE) or folder) / name
    if not path.is_dir():
        start = time.time()
        texts = random_models.synthetic_passages(3000, seed=2)
        if kind == "mt5":
            texts.append("Query: Document: Relevant: yes no")  # the prompt's own pieces
        partial = path.with_name(f".partial-{os.getpid()}.{name}")
        build(partial, texts, size=size, vocab_size=8000, **options)
        try:
            os.replace(partial, path)
        except OSError:  # a part running beside this one built it first: the same model
            if not path.is_dir():
                raise
            shutil.rmtree(partial)
        print(f"built {name} at random weights in {time.time() - start:.0f}s", flush=True)
    return path


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
