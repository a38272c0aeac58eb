"""Fine-tune mT5 as a re-ranker (monoT5) on a variety pair: Catalan queries + French passages, ...

Training data: the JSONL of mine_negatives.py ({"query", "pos": [...], "neg": [...]}); each
(query, positive) pair is a "yes" example and each (query, negative) a "no" one, and optionally
the official MS MARCO triples (query<TAB>positive<TAB>negative) as the original training did.
Inputs are exactly the re-ranker's (``Query: {q} Document: {d} Relevant:``, 512 tokens), the
targets the tokens ``yes`` / ``no``, so the output loads in rerank_mt5.py and run_mmarco.py
--rerank by path.

The learning rate is a flag: 5e-5 by default, what the authors' later code used (the paper's stated
5e-12 would not move the weights). The default batch is 32 pairs per optimizer step (the original
loop took 4, one step per batch of 4; --batch-size 4 reproduces it). A step at these batch sizes is
CPU-bound on a GPU (thousands of kernel launches for little work), so on a GPU the model is
compiled with CUDA graphs (--compile) over few static shapes (pairs padded to a multiple of 64
tokens, masked: same loss), with bf16 autocast (--dtype), fused AdamW and no host sync but every
--log-every steps. One step equals one step of the original loop on the same batch (fp32 on a CPU,
tested). Checkpoints every --save-every steps under {out}.checkpoints/: a killed run restarts where
its last checkpoint left off (same data order, same dropout stream), bitwise on a CPU. wandb
logging only with --wandb PROJECT.

Examples:
  python finetune_mt5.py --train data/training/ca-fr.ce.jsonl --out models/mt5-lt-cafr
  python finetune_mt5.py --train data/training/af-dt.ce.jsonl --batch-size 4 --learning-rate 5e-5
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
TRAIN = ""  # training JSONL ({query, pos, neg} a line) from mine_negatives.py, or paper:PAIR for
            # the paper's released file (paper:ca-fr, paper:af-dt)
TRIPLES = ""  # optional: MS MARCO triples (query<TAB>positive<TAB>negative) added to the data
MODEL = "mt5"  # model to start from: mt5 (unicamp-dl/mt5-base-mmarco-v2), an HF id or a path
TOKENIZER = ""  # tokenizer (HF id or path); empty = the start model's own, else that of the model
                # it was fine-tuned from (unicamp-dl/mt5-base-mmarco-v2: the paper's mt5-lt-*
                # checkpoints ship none); the output always holds its tokenizer
OUT = ""  # output model folder; empty = {models_dir}/mt5-ft-{training file name}
LEARNING_RATE = 5e-5  # AdamW learning rate; 5e-5 is what the authors' later code used (the paper's
                      # 5e-12 is a typo that trains nothing)
BATCH_SIZE = 32  # pairs per optimizer step; the original loop used 4 (see the doc above)
GRAD_ACCUM = 1  # micro-batches per optimizer step: each step's batch is split among them (less
                # memory)
EPOCHS = 1  # passes over the training pairs (when --max-steps is 0)
MAX_STEPS = 0  # optimizer steps; 0 = --epochs over the data
WARMUP_STEPS = 0  # linear warm-up of the learning rate over these steps, then constant
SAVE_EVERY = 1000  # optimizer steps between checkpoints (a killed run resumes from the last)
STOP_AFTER = 0  # stop this job after this many optimizer steps, checkpointed (time-limited jobs);
                # run the same command again to continue; 0 = run to the end
DTYPE = "auto"  # precision of training: auto = bf16 autocast on a GPU, fp32 on a CPU; bf16
                # (autocast, needs a GPU); fp32; recorded in the model's training.json (fp8 is for
                # inference only: index_*.py, rerank_mt5.py, run_*.py)
COMPILE = "auto"  # compile the model: auto (on a GPU, with CUDA graphs), on or off
LOG_EVERY = 50  # optimizer steps between loss logs (the only host syncs)
SEED = 42  # seed of the data order, the dropout and the initial state
DEVICE = ""  # torch device (cuda, cuda:1, cpu); empty = cuda if available, else cpu
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

from crossvariety.data import released
from crossvariety.errors import UsageError, UserError
from crossvariety.models import resolve_model
from crossvariety.data.negatives import read_examples
from crossvariety.runs import check_writable
from crossvariety.data.textfiles import read_lines

log = logging.getLogger("finetune_mt5")
if not TRAIN:
    raise UsageError("--train FILE is required (mine_negatives.py makes it)")
if BATCH_SIZE % GRAD_ACCUM:
    raise UsageError(f"--batch-size {BATCH_SIZE} is not a multiple of --grad-accum {GRAD_ACCUM}")
if DTYPE == "fp8":
    raise UsageError("--dtype fp8 is for inference only (index_*.py, rerank_mt5.py, run_*.py); "
                     "train with auto, bf16 or fp32")
if DTYPE not in ("auto", "bf16", "fp32"):
    raise UsageError(f"--dtype {DTYPE!r}: choose auto, bf16 or fp32")
name = TRAIN.replace(":", "-") if TRAIN.startswith("paper:") else Path(TRAIN).name.split(".")[0]
out = Path(OUT) if OUT else paths["models_dir"] / f"mt5-ft-{name}"
checkpoints_dir = Path(f"{out}.checkpoints")
if OVERWRITE:
    shutil.rmtree(checkpoints_dir, ignore_errors=True)
if (out / "config.json").is_file() and not OVERWRITE:
    log.info("%s exists; nothing to do (--overwrite trains again)", out)
    sys.exit(0)
check_writable(out.parent, folder=True, option="--out")  # before, not after, the training

# 1. the training pairs, tokenised once (as one flat array: little memory for millions)
model_path = resolve_model(MODEL)
if TOKENIZER:
    resolve_model(TOKENIZER)  # an unknown name fails before the data is read
TRAIN = released.resolve(TRAIN, "training")  # paper:ca-fr -> the paper's released file
examples = read_examples(TRAIN)
pairs = [(e["query"], p, 1) for e in examples for p in e["pos"][:1]] + \
        [(e["query"], n, 0) for e in examples for n in e["neg"]]
if TRIPLES:
    if not Path(TRIPLES).is_file():
        raise UserError(f"triples file {TRIPLES} not found; give the MS MARCO triples TSV "
                        "(query<TAB>positive<TAB>negative) or leave --triples out")
    for lineno, line in read_lines(TRIPLES):
        fields = line.split("\t")
        if len(fields) != 3:
            raise UserError(f"{TRIPLES}:{lineno}: a triple is query<TAB>positive<TAB>negative "
                            f"(found {len(fields)} fields)")
        pairs += [(fields[0], fields[1], 1), (fields[0], fields[2], 0)]

# torch and the models after the checks and the data above: a typo answers in a second
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForSeq2SeqLM  # noqa: E402

from crossvariety.neural import checkpoints, training  # noqa: E402
from crossvariety.neural.batching import default_device, no_cudnn_attention  # noqa: E402
from crossvariety.models import fetch, from_pretrained, load_tokenizer  # noqa: E402
from crossvariety.rerank.monot5 import MAX_LENGTH, prompt_tokenizer, yes_no_ids  # noqa: E402
from crossvariety.runs import atomic_path  # noqa: E402

torch.manual_seed(SEED)
device = default_device(DEVICE or None)
dtype = DTYPE if DTYPE != "auto" else ("bf16" if device.type == "cuda" else "fp32")
if dtype == "bf16" and device.type != "cuda":
    raise UsageError("--dtype bf16 needs a GPU (bf16 autocast); use fp32 or auto on a CPU")
no_cudnn_attention(device)
# the start's own tokenizer, else its base model's (the paper's mt5-lt-* checkpoints ship none)
start_folder = fetch(model_path, "mt5")
tokenizer, tokenizer_name = load_tokenizer(model_path, "mt5", TOKENIZER or None)
yes, no = yes_no_ids(tokenizer, tokenizer_name)
start = time.time()
tokenize = prompt_tokenizer(tokenizer)  # the re-ranker's inputs, as flat arrays
blocks = [tokenize([(q, d) for q, d, _ in pairs[b:b + 50_000]])
          for b in range(0, len(pairs), 50_000)]
lengths = np.concatenate([block.lengths for block in blocks])
offsets = np.concatenate([[0], np.cumsum(lengths)])
flat = np.concatenate([block.ids for block in blocks])
labels = np.array([yes if rel else no for _, _, rel in pairs])
log.info("%d training pairs (%d yes, %d no) from %s%s, tokenised in %.1fs", len(pairs),
         int((labels == yes).sum()), int((labels == no).sum()), TRAIN,
         f" and {TRIPLES}" if TRIPLES else "", time.time() - start)

micro = BATCH_SIZE // GRAD_ACCUM
per_epoch = len(pairs) // micro  # micro-batches per epoch (the remainder waits for the next)
if per_epoch == 0:
    raise UserError(f"{len(pairs)} training pairs are fewer than a micro-batch of {micro}; "
                    "lower --batch-size or add examples")
total_steps = MAX_STEPS or EPOCHS * per_epoch // GRAD_ACCUM


def micro_batch(m):
    """The m-th micro-batch of the run (epoch e's order is seeded by SEED + e, so a resumed
    run sees exactly what the killed one would have), padded to one of few static lengths."""
    epoch, position = divmod(m, per_epoch)
    chosen = training.epoch_order(SEED, epoch, len(pairs))[position * micro:(position + 1) * micro]
    longest = max(lengths[i] for i in chosen)
    input_ids, mask = training.pad([flat[offsets[i]:offsets[i + 1]] for i in chosen],
                                   training.padded_length(longest, MAX_LENGTH, pad_multiple),
                                   tokenizer.pad_token_id)
    target = np.stack([labels[chosen], np.full(len(chosen), tokenizer.eos_token_id)], axis=1)
    return [torch.from_numpy(a).to(device, non_blocking=True) for a in (input_ids, mask, target)]


# 2. the model and optimizer, or the last checkpoint of a killed run
step = 0
saved = checkpoints.saved(checkpoints_dir)
source = saved[-1] if saved else start_folder
model = from_pretrained(AutoModelForSeq2SeqLM, source).to(device).train()
optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE,
                              fused=device.type == "cuda")
scheduler = torch.optim.lr_scheduler.LambdaLR(
    optimizer, lambda s: min(1.0, (s + 1) / WARMUP_STEPS) if WARMUP_STEPS else 1.0)
if saved:
    step = checkpoints.restore(saved[-1], optimizer, scheduler, device)
    log.info("resuming from %s (step %d of %d)", saved[-1], step, total_steps)
else:
    log.info("training %s from %s (tokenizer %s): %d steps of %d pairs (%d x %d), lr %g, %s %s",
             out, model_path, tokenizer_name, total_steps, BATCH_SIZE, GRAD_ACCUM, micro,
             LEARNING_RATE, device, dtype)
graphs = training.compile_module(model, COMPILE, device)
pad_multiple = training.PAD_MULTIPLE if graphs else 1  # static shapes for the graphs
wandb = None
if WANDB:
    import wandb
    wandb.init(project=WANDB, config={k: v for k, v in globals().items() if k.isupper()})


def save_checkpoint():
    checkpoints.save(checkpoints_dir, step, model.save_pretrained, optimizer, scheduler, device)


# 3. the loop: losses stay on the device until a log line needs them
autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
losses = torch.zeros((), device=device)
last_loss = None
job_steps, start, logged = 0, time.time(), time.time()
while step < total_steps:
    for k in range(GRAD_ACCUM):
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        input_ids, mask, target = micro_batch(step * GRAD_ACCUM + k)
        with autocast:
            loss = model(input_ids=input_ids, attention_mask=mask, labels=target,
                         use_cache=False).loss
        (loss / GRAD_ACCUM).backward()
        losses += loss.detach() / GRAD_ACCUM
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    step += 1
    job_steps += 1
    n = training.log_window(step, LOG_EVERY, total_steps)
    if n:
        last_loss = training.window_mean(losses, n)
        rate = n * BATCH_SIZE / (time.time() - logged)
        log.info("step %d/%d loss %.4f (%.0f pairs/s)", step, total_steps, last_loss, rate)
        if wandb:
            wandb.log({"loss": last_loss, "pairs_per_s": rate, "lr": scheduler.get_last_lr()[0]},
                      step=step)
        logged = time.time()
    stopping = training.stop_due(STOP_AFTER, job_steps, step, total_steps)
    if step % SAVE_EVERY == 0 or stopping:
        save_checkpoint()
    if stopping:
        log.info("stopping after %d steps as asked (--stop-after); run again to continue", job_steps)
        sys.exit(0)

# 4. the trained re-ranker, in one piece
with atomic_path(out) as tmp:
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "training.json").write_text(json.dumps(
        {k.lower(): v for k, v in globals().items() if k.isupper()} |
        {"start": str(model_path), "tokenizer": tokenizer_name, "pairs": len(pairs),
         "steps": total_steps, "dtype": dtype, "cuda_graphs": graphs, "last_loss": last_loss},
        indent=1))
shutil.rmtree(checkpoints_dir, ignore_errors=True)
seconds = time.time() - start
log.info("wrote %s: %d steps in %.1fs (%.0f pairs/s)", out, job_steps, seconds,
         job_steps * BATCH_SIZE / max(seconds, 1e-9))
