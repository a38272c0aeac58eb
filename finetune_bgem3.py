"""Fine-tune BGE-M3 (dense) on a variety pair with FlagEmbedding's current trainer, under torchrun.

Training data: the JSONL of mine_negatives.py ({"query", "pos": [...], "neg": [...]}). The
defaults are the paper's recipe: learning rate 1e-5, 1 epoch, 8 queries per device, temperature
0.02, group size 2 (1 positive + 1 negative), queries 64 / passages 256 tokens, negatives shared
across devices, no query instruction. Every value is a flag, and --extra passes further
arguments to FlagEmbedding verbatim.

It runs ``torchrun --nproc_per_node N -m FlagEmbedding.finetune.embedder.encoder_only.m3`` (the
module that replaced the removed ``FlagEmbedding.baai_general_embedding.finetune.run``). Changed
from the reference command, without changing the recipe's semantics: bf16 instead of fp16 on a
GPU (same speed on Hopper, no loss scaling), fused AdamW, 4 data-loader workers with pinned
memory. On a CPU (tests) it runs fp32 with --use_cpu. The model is written to a temporary folder
and renamed when training succeeded, so an interrupted run leaves no folder that looks trained;
the output loads in index_bgem3.py and run_mmarco.py --model by path.

Examples:
  python finetune_bgem3.py --train data/training/ca-fr.ce.jsonl --out models/bge-m3-lt-cafr
  python finetune_bgem3.py --train data/training/af-dt.ce.jsonl --nproc-per-node 4
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
TRAIN = ""  # training JSONL from mine_negatives.py
MODEL = "bge-m3"  # start: BAAI/bge-m3
OUT = ""  # empty = {models_dir}/bge-m3-ft-{training file name}
LEARNING_RATE = 1e-5
EPOCHS = 1
BATCH_SIZE = 8  # queries per device per step
GROUP_SIZE = 2  # passages per query: 1 positive + GROUP_SIZE - 1 negatives
TEMPERATURE = 0.02
QUERY_MAX_LEN = 64
PASSAGE_MAX_LEN = 256
CROSS_DEVICE_NEGATIVES = True
QUERY_INSTRUCTION = ""
NPROC_PER_NODE = 1  # processes (GPUs) per machine
PRECISION = "auto"  # auto (bf16 on a GPU, fp32 on a CPU), bf16, fp16 or fp32
WORKERS = -1  # data-loader workers per process; -1 = 4 on a GPU, 0 on a CPU
LOGGING_STEPS = 10
SAVE_STEPS = 0  # checkpoint every N steps (resume with --extra='--resume_from_checkpoint DIR')
SEED = 42
EXTRA = ""  # further FlagEmbedding / HF TrainingArguments, passed as they are
OVERWRITE = False
HELP = {
    "TRAIN": "training JSONL ({query, pos, neg} a line) from mine_negatives.py, or paper:PAIR "
             "for the paper's released file (paper:ca-fr, paper:af-dt; ~2.0M lines)",
    "MODEL": "model to start from: bge-m3 (BAAI/bge-m3), an HF id or a local path",
    "OUT": "output model folder; empty = {models_dir}/bge-m3-ft-{training file name}",
    "LEARNING_RATE": "learning rate (the paper: 1e-5)",
    "EPOCHS": "training epochs (the paper: 1)",
    "BATCH_SIZE": "queries per device per step (the paper: 8)",
    "GROUP_SIZE": "passages per query: 1 positive + GROUP_SIZE-1 negatives (the paper: 2)",
    "TEMPERATURE": "temperature of the contrastive loss (the paper: 0.02)",
    "QUERY_MAX_LEN": "query tokens (the paper: 64)",
    "PASSAGE_MAX_LEN": "passage tokens (the paper: 256)",
    "CROSS_DEVICE_NEGATIVES": "share in-batch negatives across devices (the paper: on)",
    "QUERY_INSTRUCTION": "instruction prepended to queries (the paper: none)",
    "NPROC_PER_NODE": "torchrun processes (GPUs) on this machine",
    "PRECISION": "auto (bf16 on a GPU, fp32 on a CPU), bf16, fp16 or fp32",
    "WORKERS": "data-loader worker processes per training process; -1 = 4 on a GPU, 0 on a CPU "
               "(where they only compete with the training for the cores)",
    "LOGGING_STEPS": "steps between loss logs",
    "SAVE_STEPS": "steps between checkpoints in the output folder; 0 = none",
    "SEED": "random seed",
    "EXTRA": "further arguments for FlagEmbedding's trainer, in one string, e.g. "
             "--extra='--warmup_ratio 0.1 --max_steps 500'",
    "OVERWRITE": "train again even if the output folder exists",
}
paths = settings.configure(globals(), HELP)
# -----------------------------------------------------------------------------
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from crossvariety.errors import UsageError, UserError
from crossvariety import released
from crossvariety.models import resolve_model
from crossvariety.negatives import read_examples
from crossvariety.runs import atomic_path

log = logging.getLogger("finetune_bgem3")
if not TRAIN:
    raise UsageError("--train FILE is required (mine_negatives.py makes it)")
name = TRAIN.replace(":", "-") if TRAIN.startswith("paper:") else Path(TRAIN).name.split(".")[0]
out = Path(OUT) if OUT else paths["models_dir"] / f"bge-m3-ft-{name}"
if (out / "config.json").is_file() and not OVERWRITE:
    log.info("%s exists; nothing to do (--overwrite trains again)", out)
    sys.exit(0)
model_path = resolve_model(MODEL)
TRAIN = released.resolve(TRAIN, "training")  # paper:ca-fr -> the paper's released file
examples = read_examples(TRAIN)  # a bad line fails here, not deep in the trainer
gpu = torch.cuda.is_available()
precision = PRECISION if PRECISION != "auto" else ("bf16" if gpu else "fp32")
if precision not in ("bf16", "fp16", "fp32"):
    raise UsageError(f"--precision {PRECISION!r}: choose auto, bf16, fp16 or fp32")
if precision in ("bf16", "fp16") and not gpu:
    raise UsageError(f"--precision {precision} needs a GPU; use fp32 on a CPU")

with atomic_path(out) as tmp:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(NPROC_PER_NODE),
        "-m", "FlagEmbedding.finetune.embedder.encoder_only.m3",
        "--model_name_or_path", model_path, "--train_data", str(TRAIN), "--output_dir", str(tmp),
        "--learning_rate", str(LEARNING_RATE), "--num_train_epochs", str(EPOCHS),
        "--per_device_train_batch_size", str(BATCH_SIZE), "--train_group_size", str(GROUP_SIZE),
        "--temperature", str(TEMPERATURE), "--query_max_len", str(QUERY_MAX_LEN),
        "--passage_max_len", str(PASSAGE_MAX_LEN),
        "--query_instruction_for_retrieval", QUERY_INSTRUCTION,
        "--negatives_cross_device", str(CROSS_DEVICE_NEGATIVES),
        "--normalize_embeddings", "True", "--sentence_pooling_method", "cls",
        "--logging_steps", str(LOGGING_STEPS), "--seed", str(SEED), "--report_to", "none",
        "--dataloader_num_workers", str(WORKERS if WORKERS >= 0 else (4 if gpu else 0)), "--dataloader_pin_memory", str(gpu),
        "--save_strategy", "steps" if SAVE_STEPS else "no",
    ] + (["--save_steps", str(SAVE_STEPS)] if SAVE_STEPS else []) \
      + (["--optim", "adamw_torch_fused"] if gpu else ["--use_cpu", "True"]) \
      + ([f"--{precision}", "True"] if precision in ("bf16", "fp16") else []) + shlex.split(EXTRA)
    log.info("training %s from %s on %d examples (%s, %d process(es)):\n  %s", out, model_path,
             len(examples), precision, NPROC_PER_NODE, " ".join(command))
    start = time.time()
    returncode = subprocess.run(command).returncode
    if returncode != 0:
        raise UserError(f"FlagEmbedding's trainer failed ({returncode}); its output is above. "
                        f"Nothing was written to {out}")
seconds = time.time() - start
samples = len(examples) * EPOCHS
log.info("wrote %s in %.1fs (%.1f training examples/s)", out, seconds, samples / seconds)
