"""Fine-tune BGE-M3 (dense) on a variety pair: FlagEmbedding's m3 model and loss, a fast loop.

Training data: the JSONL of mine_negatives.py ({"query", "pos": [...], "neg": [...]}), or the
paper's released file (--train paper:ca-fr). The defaults are the paper's recipe: learning rate
1e-5, 1 epoch, 8 queries per device, temperature 0.02, group size 2 (a positive and a negative
per query), queries 64 / passages 256 tokens, negatives shared across devices, no instruction.

The model and the loss are FlagEmbedding's own (EncoderOnlyEmbedderM3Model: CLS pooling,
normalised, the passages of every query of the batch as negatives, cross-entropy at the
temperature); the optimizer is its Trainer's defaults (AdamW betas 0.9/0.999, eps 1e-8, no weight
decay, gradient norm clipped at 1.0, linear decay to 0 after --warmup-ratio). The loop replaces
HF's Trainer to make a step cheap on a GPU, without changing the recipe: bf16 autocast (--dtype
auto; the reference: fp16 with loss scaling), queries and passages padded to a multiple of 64
tokens (masked; few shapes) so that the encoder is compiled with CUDA graphs (--compile), torch's
cuDNN attention off, fused AdamW, tokenisation in loader workers, no host sync but at log steps.
One step equals one step of FlagEmbedding's trainer on the same batch (fp32 on a CPU, tested).
Deviations, for exact resumption: the epoch's order is our seeded permutation (not HF's sampler's),
the positive and negatives of an example are drawn from a stream seeded by (seed, epoch, example),
and the last batch of an epoch is filled up with the epoch's first examples.

Checkpoints every --save-every steps under {out}.checkpoints/: a killed run restarts where its
last checkpoint left off, bitwise on a CPU. The output is written to a temporary folder and
renamed when training succeeded; it loads in FlagEmbedding, index_bgem3.py and run_mmarco.py
--model by path. Several GPUs: torchrun (--batch-size stays per GPU, as in FlagEmbedding).

Examples:
  python finetune_bgem3.py --config configs/train_cafr_bgem3.toml
  python finetune_bgem3.py --train paper:af-dt --out models/bge-m3-ft-afdt
  torchrun --nproc_per_node 4 finetune_bgem3.py --train data/training/ca-fr.ce.jsonl
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
TRAIN = ""  # training JSONL ({query, pos, neg} a line) from mine_negatives.py, or paper:PAIR for
            # the paper's released file (paper:ca-fr, paper:af-dt; ~2.0M lines)
MODEL = "bge-m3"  # model to start from: bge-m3 (BAAI/bge-m3), an HF id or a local path
OUT = ""  # output model folder; empty = {models_dir}/bge-m3-ft-{training file name}
LEARNING_RATE = 1e-5  # peak learning rate (the paper: 1e-5)
EPOCHS = 1  # passes over the training file (the paper: 1), when --max-steps is 0
MAX_STEPS = 0  # optimizer steps; 0 = --epochs over the data
BATCH_SIZE = 8  # queries per device per step (the paper: 8)
GROUP_SIZE = 2  # passages per query: 1 positive + GROUP_SIZE-1 negatives (the paper: 2)
TEMPERATURE = 0.02  # temperature of the contrastive loss (the paper: 0.02)
QUERY_MAX_LEN = 64  # query tokens (the paper: 64)
PASSAGE_MAX_LEN = 256  # passage tokens (the paper: 256)
CROSS_DEVICE_NEGATIVES = True  # under torchrun, every GPU's passages are negatives for every query
                               # (the paper: on)
QUERY_INSTRUCTION = ""  # instruction prepended to queries (the paper: none)
WARMUP_RATIO = 0.0  # fraction of the steps with a linear warm-up (HF's default, the paper: 0)
MAX_GRAD_NORM = 1.0  # clip the gradient norm to this (HF Trainer's default 1.0, which the reference
                     # command keeps); 0 = no clipping
DTYPE = "auto"  # precision of training: auto = bf16 autocast on a GPU, fp32 on a CPU; bf16
                # (autocast, needs a GPU); fp32; recorded in the model's training.json (fp8 is for
                # inference only: index_*.py, rerank_mt5.py, run_*.py)
COMPILE = "auto"  # compile the encoder: auto (on a GPU, with CUDA graphs), on or off
WORKERS = -1  # loader worker processes that tokenise ahead; -1 = 2 on a GPU, 0 on a CPU
SAVE_EVERY = 5000  # optimizer steps between checkpoints (a killed run resumes from the last)
STOP_AFTER = 0  # stop this job after this many optimizer steps, checkpointed (time-limited jobs);
                # run the same command again to continue; 0 = run to the end
LOG_EVERY = 50  # optimizer steps between loss logs (the only host syncs)
SEED = 42  # seed of the data order, the negatives drawn and the dropout
DEVICE = ""  # torch device (cuda, cuda:1, cpu); empty = cuda if available (the local rank's under
             # torchrun), else cpu
OVERWRITE = False  # start from scratch even if the output or checkpoints exist
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

from crossvariety.errors import UsageError, UserError

log = logging.getLogger("finetune_bgem3")
if not TRAIN:
    raise UsageError("--train FILE is required (mine_negatives.py makes it)")
if GROUP_SIZE < 1:
    raise UsageError(f"--group-size {GROUP_SIZE}: a group holds the positive, so at least 1")
if DTYPE == "fp8":
    raise UsageError("--dtype fp8 is for inference only (index_*.py, rerank_mt5.py, run_*.py); "
                     "train with auto, bf16 or fp32")
if DTYPE not in ("auto", "bf16", "fp32"):
    raise UsageError(f"--dtype {DTYPE!r}: choose auto, bf16 or fp32")
name = TRAIN.replace(":", "-") if TRAIN.startswith("paper:") else Path(TRAIN).name.split(".")[0]
out = Path(OUT) if OUT else paths["models_dir"] / f"bge-m3-ft-{name}"
checkpoints_dir = Path(f"{out}.checkpoints")
if (out / "config.json").is_file() and not OVERWRITE:
    log.info("%s exists; nothing to do (--overwrite trains again)", out)
    sys.exit(0)

from crossvariety.data import released  # noqa: E402
from crossvariety.models import resolve_model  # noqa: E402
from crossvariety.data.negatives import read_examples  # noqa: E402
from crossvariety.runs import check_writable  # noqa: E402

check_writable(out.parent, folder=True, option="--out")  # before, not after, the training
model_path = resolve_model(MODEL)
TRAIN = released.resolve(TRAIN, "training")  # paper:ca-fr -> the paper's released file
examples = read_examples(TRAIN)
if GROUP_SIZE > 1:
    missing = [lineno for lineno, e in enumerate(examples, start=1) if not e["neg"]]
    if missing:
        raise UserError(f"{TRAIN}:{missing[0]}: no negative ({len(missing)} such lines); "
                        f"--group-size {GROUP_SIZE} needs one per line (or --group-size 1)")

# torch and the models after the checks and the data above: a typo answers in a second
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer, get_linear_schedule_with_warmup  # noqa: E402

from crossvariety.neural import checkpoints, training  # noqa: E402
from crossvariety.models import from_pretrained  # noqa: E402
from crossvariety.runs import atomic_path  # noqa: E402

device, rank, world = training.processes(DEVICE)
if OVERWRITE and rank == 0:
    shutil.rmtree(checkpoints_dir, ignore_errors=True)
dtype = DTYPE if DTYPE != "auto" else ("bf16" if device.type == "cuda" else "fp32")
if dtype == "bf16" and device.type != "cuda":
    raise UsageError("--dtype bf16 needs a GPU (bf16 autocast); use fp32 or auto on a CPU")
torch.manual_seed(SEED)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the loader workers tokenise

# 1. the training groups: step s -> this process's queries and passages, padded to few shapes
per_step = BATCH_SIZE * world
per_epoch = math.ceil(len(examples) / per_step)  # the last batch is filled from the start
total_steps = MAX_STEPS or EPOCHS * per_epoch
tokenizer = from_pretrained(AutoTokenizer, model_path)  # a missing model: one line


class Groups(torch.utils.data.Dataset):
    """Step -> this process's share of the step's examples, tokenised and padded: the queries,
    and per query its positive and GROUP_SIZE - 1 negatives drawn as FlagEmbedding draws them
    (a random positive; negatives without replacement, repeated when too few)."""

    def __len__(self):
        return total_steps

    def __getitem__(self, step):
        epoch, position = divmod(step, per_epoch)
        order = training.epoch_order(SEED, epoch, len(examples))
        chosen = order[(position * per_step + rank * BATCH_SIZE + np.arange(BATCH_SIZE))
                       % len(examples)]
        queries, passages = [], []
        for i in chosen:
            example, rng = examples[i], np.random.default_rng((SEED, epoch, int(i)))
            queries.append(QUERY_INSTRUCTION + example["query"])
            passages.append(example["pos"][rng.integers(len(example["pos"]))])
            negatives = example["neg"] * math.ceil((GROUP_SIZE - 1) / max(len(example["neg"]), 1))
            passages += [negatives[j] for j in rng.permutation(len(negatives))[:GROUP_SIZE - 1]]
        return [torch.from_numpy(a) for texts, max_len in ((queries, QUERY_MAX_LEN),
                                                           (passages, PASSAGE_MAX_LEN))
                for a in self.padded(texts, max_len)]

    @staticmethod
    def padded(texts, max_len):
        ids = tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]
        length = training.padded_length(max(map(len, ids)), max_len, pad_multiple)
        return training.pad(ids, length, tokenizer.pad_token_id)


# 2. FlagEmbedding's model and loss (or the last checkpoint of a killed run), the optimizer
from FlagEmbedding.finetune.embedder.encoder_only.m3.modeling import EncoderOnlyEmbedderM3Model
from FlagEmbedding.finetune.embedder.encoder_only.m3.runner import EncoderOnlyEmbedderM3Runner

saved = checkpoints.saved(checkpoints_dir)
source = saved[-1] if saved else model_path
model = EncoderOnlyEmbedderM3Model(
    EncoderOnlyEmbedderM3Runner.get_model(str(source)), tokenizer=tokenizer,
    negatives_cross_device=CROSS_DEVICE_NEGATIVES and world > 1, temperature=TEMPERATURE,
    sentence_pooling_method="cls", normalize_embeddings=True, unified_finetuning=False).to(device)
if getattr(model.model, "pooler", None) is not None:
    model.model.pooler.requires_grad_(False)  # no loss reaches it (no gradient in HF's Trainer)
model.train()
trainable = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8,
                              weight_decay=0.0, fused=device.type == "cuda")
scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(WARMUP_RATIO * total_steps),
                                            total_steps)
step = 0
if saved:
    step = checkpoints.restore(saved[-1], optimizer, scheduler, device)
    log.info("resuming from %s (step %d of %d)", saved[-1], step, total_steps)
else:
    log.info("training %s from %s on %d examples from %s: %d steps of %d x %d queries (group "
             "%d), lr %g, temperature %g, %s %s, %s", out, model_path, len(examples), TRAIN,
             total_steps, BATCH_SIZE, world, GROUP_SIZE, LEARNING_RATE, TEMPERATURE, device,
             dtype, "negatives_cross_device" if model.negatives_cross_device else
             "in-batch negatives")
graphs = training.compile_module(model.model, COMPILE, device)
pad_multiple = training.PAD_MULTIPLE if graphs else 1  # static shapes for the graphs
network = model
if world > 1:
    network = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None)
workers = WORKERS if WORKERS >= 0 else (2 if device.type == "cuda" else 0)
loader = torch.utils.data.DataLoader(
    Groups(), batch_size=None, sampler=range(step, total_steps), num_workers=workers,
    pin_memory=device.type == "cuda", generator=torch.Generator(),  # not the dropout's RNG
    prefetch_factor=8 if workers else None)


def save_checkpoint():
    if rank != 0:
        return

    def save_model(folder):
        model.save(folder)
        tokenizer.save_pretrained(folder)

    checkpoints.save(checkpoints_dir, step, save_model, optimizer, scheduler, device)


# 3. the loop: losses stay on the device until a log line needs them
autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
losses = torch.zeros((), device=device)
last_loss = None
job_steps, start, logged = 0, time.time(), time.time()
for q_ids, q_mask, p_ids, p_mask in loader:
    if graphs:
        torch.compiler.cudagraph_mark_step_begin()
    q_ids, q_mask, p_ids, p_mask = (t.to(device, non_blocking=True)
                                    for t in (q_ids, q_mask, p_ids, p_mask))
    with autocast:
        loss = network(queries={"input_ids": q_ids, "attention_mask": q_mask},
                       passages={"input_ids": p_ids, "attention_mask": p_mask}).loss
    loss.backward()
    if MAX_GRAD_NORM > 0:
        torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM, foreach=True)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    losses += loss.detach()
    step += 1
    job_steps += 1
    n = training.log_window(step, LOG_EVERY, total_steps)
    if n:
        last_loss = training.window_mean(losses, n, world)
        rate = n * per_step / (time.time() - logged)
        if rank == 0:
            log.info("step %d/%d loss %.4f (%.1f samples/s)", step, total_steps, last_loss, rate)
        logged = time.time()
    stopping = training.stop_due(STOP_AFTER, job_steps, step, total_steps)
    if step % SAVE_EVERY == 0 or stopping:
        save_checkpoint()
    if stopping:
        if world > 1:
            torch.distributed.barrier()  # the checkpoint is written before any process exits
        log.info("stopping after %d steps as asked (--stop-after); run again to continue", job_steps)
        sys.exit(0)

# 4. the trained encoder, in FlagEmbedding's format
if rank == 0:
    with atomic_path(out) as tmp:
        model.save(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "training.json").write_text(json.dumps(
            {k.lower(): v for k, v in globals().items() if k.isupper()} |
            {"start": str(model_path), "examples": len(examples), "steps": total_steps,
             "processes": world, "dtype": dtype, "cuda_graphs": graphs,
             "last_loss": last_loss}, indent=1))
    shutil.rmtree(checkpoints_dir, ignore_errors=True)
    seconds = time.time() - start
    log.info("wrote %s: %d steps in %.1fs (%.1f samples/s)", out, job_steps, seconds,
             job_steps * per_step / max(seconds, 1e-9))
if world > 1:
    torch.distributed.destroy_process_group()
