"""Fine-tune ColBERT-XM on a variety pair: Catalan queries + French passages, ...

The recipe of the paper's fork of xm-retrievers (run_multi_vector_biencoder.sh, v1.5) is the
default: start from the X-MOD backbone facebook/xmod-base (the lt checkpoints' cards say so;
--model colbert-xm starts from the published ColBERT-XM instead), the adapter of the
collection's language (--language fr for ca-fr), the embeddings and every layer's language
adapters and adapter layer norm frozen (attention, feed-forward, shared layer norms and the
128-d projection train), 32 tuples per step, AdamW lr 5e-6 eps 1e-6, 200,000 steps with 20,000
warm-up steps then linear decay, seed 42, bf16 autocast on a GPU (--dtype auto). Loss
(colbert-ai's, with in-batch negatives): cross-entropy of each query over (its positive, its
negative) plus cross-entropy of each query over its positive and every passage of the other
queries.

Training data: the JSONL of mine_negatives.py ({"query", "pos", "neg"} a line; --source ce
--num-negatives 1 --rounds 13 is the recipe's 6.5M tuples: ceil(200,000 x 32 / 502,939)
rounds), one tuple (query, first positive, first negative) per line, in a seeded order per
epoch. Deviations from the fork: weight decay 0 (a flag; the fork's value is not recorded in
the script), and with several GPUs (torchrun) the in-batch negatives are those of each GPU's
share of the batch, as in colbert-ai.

Checkpoints every --save-every steps under {out}.checkpoints/: a killed run restarts where its
last checkpoint left off (same data order, same dropout stream), bitwise on a CPU. The output is
a Stanford-format checkpoint (as the published ones; its saved language is the training
language) that index_colbertxm.py, run_mmarco.py and run_neuclir.py load by path.

Examples:
  python finetune_colbertxm.py --config configs/train_cafr_colbertxm.toml
  python finetune_colbertxm.py --train data/training/af-dt.ce.jsonl --language nl --out models/colbert-xm-ft-afdt
  torchrun --nproc_per_node 4 finetune_colbertxm.py --train paper:ca-fr --language fr
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
TRAIN = ""  # training JSONL ({query, pos, neg} a line) from mine_negatives.py, or paper:PAIR for
            # the paper's released file (paper:ca-fr, paper:af-dt)
MODEL = "xmod-base"  # model to start from: xmod-base (facebook/xmod-base, the recipe: a new 128-d
                     # projection), colbert-xm, a ColBERT-XM checkpoint path or an HF id
LANGUAGE = ""  # X-MOD adapter trained and saved as the model's language: the passages' language (fr
               # for ca-fr, nl for af-dt); empty = the pair of --train paper:PAIR
OUT = ""  # output checkpoint folder; empty = {models_dir}/colbert-xm-ft-{training file name}
LEARNING_RATE = 5e-6  # AdamW learning rate (the recipe: 5e-6)
ADAM_EPS = 1e-6  # AdamW epsilon (the recipe: 1e-6)
WEIGHT_DECAY = 0.0  # AdamW weight decay (0; not recorded in the fork's script)
BATCH_SIZE = 32  # tuples (query, positive, negative) per optimizer step over all GPUs; the in-batch
                 # negatives are those of each GPU's share
MAX_STEPS = 200000  # optimizer steps (the recipe: 200,000)
WARMUP_STEPS = 20000  # linear warm-up steps, then linear decay to 0 at --max-steps
FREEZE_ADAPTERS = True  # freeze the embeddings, every layer's language adapters and adapter layer
                        # norm (the recipe); false trains everything
DTYPE = "auto"  # precision of training: auto = bf16 autocast on a GPU, fp32 on a CPU; bf16
                # (autocast, needs a GPU); fp32; recorded in the model's training.json (fp8 is for
                # inference only: index_*.py, rerank_mt5.py, run_*.py)
SAVE_EVERY = 10000  # optimizer steps between checkpoints (a killed run resumes from the last)
STOP_AFTER = 0  # stop this job after this many optimizer steps, checkpointed (time-limited jobs);
                # run the same command again to continue; 0 = run to the end
LOG_EVERY = 100  # optimizer steps between loss logs (the only host syncs)
SEED = 42  # seed of the data order, the dropout and the new projection
DEVICE = ""  # torch device (cuda, cuda:1, cpu); empty = cuda if available (the local rank's under
             # torchrun), else cpu
WANDB = ""  # log to this wandb project (needs wandb installed); empty = no wandb
OVERWRITE = False  # start from scratch even if the output or checkpoints exist
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from crossvariety.neural import checkpoints, training
from crossvariety.data import released
from crossvariety.families.colbert import ColBERTXM, ColbertTokenizer, checkpoint_dir, load_tokenizer, pair_loss, read_settings
from crossvariety.errors import UsageError, UserError
from crossvariety.data.negatives import read_examples
from crossvariety.data.pairs import pair_from_name
from crossvariety.runs import atomic_path, check_writable

log = logging.getLogger("finetune_colbertxm")
if not TRAIN:
    raise UsageError("--train FILE is required (mine_negatives.py makes it)")
if DTYPE == "fp8":
    raise UsageError("--dtype fp8 is for inference only (index_*.py, rerank_mt5.py, run_*.py); "
                     "train with auto, bf16 or fp32")
if DTYPE not in ("auto", "bf16", "fp32"):
    raise UsageError(f"--dtype {DTYPE!r}: choose auto, bf16 or fp32")
language = LANGUAGE or (pair_from_name(TRAIN[len("paper:"):]).highres
                        if TRAIN.startswith("paper:") else "")
if not language:
    raise UsageError("--language is required: the passages' language (fr for ca-fr, nl for af-dt)")
device, rank, world = training.processes(DEVICE)
dtype = DTYPE if DTYPE != "auto" else ("bf16" if device.type == "cuda" else "fp32")
if dtype == "bf16" and device.type != "cuda":
    raise UsageError("--dtype bf16 needs a GPU (bf16 autocast); use fp32 or auto on a CPU")
if BATCH_SIZE % world:
    raise UsageError(f"--batch-size {BATCH_SIZE} is not a multiple of the {world} processes")
name = TRAIN.replace(":", "-") if TRAIN.startswith("paper:") else Path(TRAIN).name.split(".")[0]
out = Path(OUT) if OUT else paths["models_dir"] / f"colbert-xm-ft-{name}"
checkpoints_dir = Path(f"{out}.checkpoints")
if OVERWRITE and rank == 0:
    shutil.rmtree(checkpoints_dir, ignore_errors=True)
if (out / "artifact.metadata").is_file() and not OVERWRITE:
    log.info("%s exists; nothing to do (--overwrite trains again)", out)
    sys.exit(0)
check_writable(out.parent, folder=True, option="--out")  # before, not after, the training
torch.manual_seed(SEED)

# 1. the training tuples (query, positive, negative), in a seeded order per epoch
TRAIN = released.resolve(TRAIN, "training")
examples = read_examples(TRAIN)
tuples = [(e["query"], e["pos"][0], e["neg"][0]) for e in examples if e["neg"]]
if len(tuples) < len(examples):
    log.warning("%s: %d examples without a negative left out", TRAIN, len(examples) - len(tuples))
per_epoch = len(tuples) // BATCH_SIZE
if per_epoch == 0:
    raise UserError(f"{len(tuples)} training tuples are fewer than a batch of {BATCH_SIZE}; "
                    "lower --batch-size or add examples")
share = BATCH_SIZE // world


def batch(step):
    """This process's share of the tuples of optimizer step ``step``: epoch e's order is a
    permutation seeded by SEED + e, so a resumed run sees exactly what the killed one would."""
    epoch, position = divmod(step, per_epoch)
    order = training.epoch_order(SEED, epoch, len(tuples))
    chosen = order[position * BATCH_SIZE:(position + 1) * BATCH_SIZE][rank * share:
                                                                       (rank + 1) * share]
    return [tuples[i] for i in chosen]


# 2. the model (or the last checkpoint of a killed run), its frozen parts, the optimizer
saved = checkpoints.saved(checkpoints_dir)
start_path = checkpoint_dir(MODEL)
source = saved[-1] if saved else start_path
model_settings = read_settings(start_path, backbone=True)
tokenizer = load_tokenizer(start_path)  # XLM-R's for facebook/xmod-base, which has none
tokens = ColbertTokenizer(tokenizer, model_settings)
model = ColBERTXM(source, dim=model_settings["dim"]).to(device)
adapter = model.set_language(language)
model.saved_language = adapter  # the output's default_language: the one it was trained with
if FREEZE_ADAPTERS:
    model.freeze_embeddings_and_adapters()
model.train()
trainable = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE, eps=ADAM_EPS, weight_decay=WEIGHT_DECAY,
                              fused=device.type == "cuda")
scheduler = get_linear_schedule_with_warmup(optimizer, WARMUP_STEPS, MAX_STEPS)
step = 0
if saved:
    step = checkpoints.restore(saved[-1], optimizer, scheduler, device)
    log.info("resuming from %s (step %d of %d)", saved[-1], step, MAX_STEPS)
else:
    log.info("training %s from %s (adapter %s): %d steps of %d tuples, lr %g, %d of %d "
             "parameters trained, %s %s x %d", out, start_path, adapter, MAX_STEPS, BATCH_SIZE,
             LEARNING_RATE, sum(p.numel() for p in trainable),
             sum(p.numel() for p in model.parameters()), device, dtype, world)


class TupleLoss(torch.nn.Module):
    """queries and their (positive, negative) passages -> the loss, in one forward (for DDP)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, q_ids, q_mask, d_ids, d_mask):
        Q, D = self.model(q_ids, q_mask), self.model(d_ids, d_mask)
        return pair_loss(Q, D, tokens.keep(d_ids, d_mask), nway=2)


network = TupleLoss(model)
if world > 1:
    network = torch.nn.parallel.DistributedDataParallel(network)
wandb = None
if WANDB and rank == 0:
    import wandb
    wandb.init(project=WANDB, config={k: v for k, v in globals().items() if k.isupper()})


def tensors(texts, kind):
    if kind == "queries":
        ids, mask = tokens.queries(texts)
    else:
        lists = tokens.docs(texts)
        ids = np.full((len(lists), max(map(len, lists))), tokens.pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, i in enumerate(lists):
            ids[row, :len(i)], mask[row, :len(i)] = i, 1
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def save_checkpoint():
    if rank != 0:
        return
    checkpoints.save(checkpoints_dir, step,
                     lambda folder: model.save(folder, tokenizer, model_settings), optimizer,
                     scheduler, device)


# 3. the loop: losses stay on the device until a log line needs them
autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
losses = torch.zeros((), device=device)
job_steps, start, logged = 0, time.time(), time.time()
while step < MAX_STEPS:
    group = batch(step)
    q_ids, q_mask = tensors([q for q, _, _ in group], "queries")
    d_ids, d_mask = tensors([d for _, pos, neg in group for d in (pos, neg)], "docs")
    with autocast:
        loss = network(q_ids, q_mask, d_ids, d_mask)
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    losses += loss.detach()
    step += 1
    job_steps += 1
    n = training.log_window(step, LOG_EVERY, MAX_STEPS)
    if n:
        mean = training.window_mean(losses, n, world)  # over the processes' shares
        rate = n * BATCH_SIZE / (time.time() - logged)
        if rank == 0:
            log.info("step %d/%d loss %.4f (%.0f tuples/s)", step, MAX_STEPS, mean, rate)
        if wandb:
            wandb.log({"loss": mean, "tuples_per_s": rate, "lr": scheduler.get_last_lr()[0]},
                      step=step)
        logged = time.time()
    stopping = training.stop_due(STOP_AFTER, job_steps, step, MAX_STEPS)
    if step % SAVE_EVERY == 0 or stopping:
        save_checkpoint()
    if stopping:
        if world > 1:
            torch.distributed.barrier()  # the checkpoint is written before any process exits
        log.info("stopping after %d steps as asked (--stop-after); run again to continue", job_steps)
        sys.exit(0)

# 4. the trained model, a Stanford-format checkpoint
if rank == 0:
    with atomic_path(out) as tmp:
        model.save(tmp, tokenizer, model_settings)
        (tmp / "training.json").write_text(json.dumps(
            {k.lower(): v for k, v in globals().items() if k.isupper()} |
            {"start": str(start_path), "adapter": adapter, "tuples": len(tuples),
             "processes": world, "dtype": dtype}, indent=1))
    shutil.rmtree(checkpoints_dir, ignore_errors=True)
    seconds = time.time() - start
    log.info("wrote %s: %d steps in %.1fs (%.0f tuples/s)", out, job_steps, seconds,
             job_steps * BATCH_SIZE / max(seconds, 1e-9))
if world > 1:
    torch.distributed.destroy_process_group()
