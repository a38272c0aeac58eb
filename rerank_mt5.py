"""Re-rank a first-stage TREC run with mT5 (monoT5 on mMARCO: unicamp-dl/mt5-base-mmarco-v2).

Reads the run, keeps each query's top-k, attaches the query text (from --queries) and the
document text (from --dataset), scores every pair with log P(yes) as pyterrier-t5's mT5ReRanker
does, and writes a TREC run. Fast path: length-sorted token-budget batches, bf16 on a GPU, a
fused forward pass (the relative position bias inside the attention kernel, no cross-attention
keys and values, only the yes/no logits) compiled on a GPU, tokenisation in worker processes,
scores independent of batch-mates. A run whose qids are not in the query set
or whose docnos are not in the collection is an error; a document the run lists twice for a
query is re-ranked once, from its best rank, with a warning. A finished output is kept unless
--overwrite, or unless its record ({out}.json: the re-ranker's files or revision, the pairs
re-ranked, the queries' and documents' content, the precision) shows other inputs: then it is
re-ranked again, with a log line naming what changed. Several GPUs or machines: torchrun; each
rank re-ranks its share of the queries and rank 0 writes the run.

Examples:
  python rerank_mt5.py --run runs/mmarco-v2-fr-dev-small.bge-m3.q-ca.retrieve.res.gz \\
      --dataset irds:mmarco/v2/fr --queries data/translations/mmarco-v2-fr-dev-small.ca.tsv \\
      --model mt5-lt-cafr
  python rerank_mt5.py --run RUN.res.gz --dataset irds:mmarco/v2/fr \\
      --queries irds:mmarco/v2/fr/dev/small --model ./models/my-mt5 --top-k 100 --out OUT.res.gz
  torchrun --nproc_per_node 4 rerank_mt5.py --run RUN.res.gz --dataset irds:mmarco/v2/fr \
      --queries irds:mmarco/v2/fr/dev/small --model mt5
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
RUN = ""  # first-stage TREC run (.res or .res.gz) to re-rank
DATASET = ""  # collection of the run's documents: an irds: id (irds:mmarco/v2/fr) or a dataset
              # folder
QUERIES = ""  # the run's queries: a query file (qid<TAB>query), an irds: id
              # (irds:mmarco/v2/fr/dev/small) or a dataset folder
QUERY_FIELD = ""  # for irds: queries with several fields, the one to use (neuCLIR: title or
                  # ht_title)
MODEL = "mt5"  # re-ranker: mt5, mt5-lt-cafr, mt5-lt-afdt, a Hugging Face id or a local path
TOKENIZER = ""  # tokenizer (HF id or path); empty = the model's own, else that of the model it was
                # fine-tuned from (unicamp-dl/mt5-base-mmarco-v2: the paper's mt5-lt-* checkpoints
                # ship none)
OUT = ""  # run file to write; empty = the input's name with the stage rerank-{model}
TOP_K = 1000  # documents re-ranked per query (the rest of the run is dropped)
BATCH_TOKENS = 0  # padded tokens per batch; 0 = 65536 on a GPU, 8192 on a CPU
DEVICE = ""  # torch device (cuda, cuda:1, cpu); empty = cuda if available (the local rank's under
             # torchrun), else cpu
DTYPE = "auto"  # precision: auto = bf16 on a GPU, fp32 on a CPU; fp32 (the paper's); fp8 (matmuls
                # on fp8 tensor cores, emulated elsewhere); recorded in the run's name column
                # (README: what bf16 and fp8 cost)
COMPILE = "auto"  # torch.compile the forward pass with FlexAttention (fused kernels; ~1 min of
                  # compilation once): auto = on a GPU for 50,000 pairs or more; on; off
TOKENIZER_WORKERS = "auto"  # tokenizer processes beside the GPU's (off the GIL of the process that
                            # drives it): auto = a quarter of the cores, at most 4, on a GPU, none
                            # on a CPU; or a number (0 = tokenise on a thread)
OVERWRITE = False  # re-rank even if the output file exists
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import logging
import sys
import time
from pathlib import Path

from crossvariety.errors import UsageError
from crossvariety.models import model_label, resolve_model

log = logging.getLogger("rerank_mt5")
for name in ("RUN", "DATASET", "QUERIES"):
    if not globals()[name]:
        raise UsageError(f"--{name.lower().replace('_', '-')} is required (see --help)")
for model in (MODEL, TOKENIZER):
    if model:
        resolve_model(model)  # an unknown name fails before the run is read (and torch loads)

import pandas as pd  # noqa: E402

from crossvariety.neural import compiling, precision, ranks
from crossvariety import provenance  # noqa: E402
from crossvariety.neural.batching import worker_count  # noqa: E402
from crossvariety.data.datasets import Dataset, load_queries  # noqa: E402
from crossvariety.rerank.monot5 import MonoT5ReRanker, attach_text  # noqa: E402
from crossvariety.runs import check_precision, check_writable, read_run, reusable, \
    run_name, write_run  # noqa: E402

compiling.check(COMPILE)
worker_count(TOKENIZER_WORKERS, "cpu")
run_file = Path(RUN)
if OUT:
    out = Path(OUT)
else:
    stem = run_file.name.removesuffix(".gz").removesuffix(".res").removesuffix(".retrieve")
    out = run_file.with_name(f"{stem}.rerank-{model_label(MODEL)}.res.gz")
device, rank, world = ranks.join_stage(DEVICE)
wanted = precision.resolve(DTYPE, device)
if out.is_file() and not OVERWRITE:
    check_precision(out, wanted, made="re-ranked", elsewhere="--out")
check_writable(out, option="--out")
run = read_run(run_file, duplicates=True)  # attach_text drops them, with a warning
queries = load_queries(QUERIES, QUERY_FIELD or None)
log.info("read %s (%d rows, %d queries) and %d queries from %s", run_file, len(run),
         run.qid.nunique(), len(queries), QUERIES)
dataset = Dataset(DATASET)


def recipe():  # of the whole output, whichever rank asks
    return provenance.rerank_recipe(MODEL, run, queries, dataset, TOP_K, wanted, TOKENIZER or None)


if out.is_file() and not OVERWRITE and reusable(out, recipe()):
    log.info("%s exists and was made from the same inputs; nothing to do (--overwrite "
             "re-ranks again)", out)
    sys.exit(0)
share = run[run.qid.isin(sorted(run.qid.unique())[rank::world])] if world > 1 else run
frame = attach_text(share, queries, dataset, TOP_K)
reranker = MonoT5ReRanker(MODEL, batch_tokens=BATCH_TOKENS, device=device, dtype=wanted,
                          compile=COMPILE, tokenizer_workers=TOKENIZER_WORKERS,
                          tok_model=TOKENIZER or None)
start = time.time()
results = reranker(frame)
seconds = time.time() - start
log.info("re-ranked %d pairs%s with %s on %s (%s) in %.1fs (%.0f pairs/s)", len(frame),
         f" (rank {rank} of {world})" if world > 1 else "", reranker.model_name,
         reranker.device, reranker.precision, seconds, len(frame) / max(seconds, 1e-9))
shares = ranks.gather(results)
if rank == 0:  # the rows in the order one process gives: by qid, each query's as ranked
    results = pd.concat(shares).sort_values("qid", kind="stable") if world > 1 else results
    write_run(results, out, name=run_name(out, reranker.precision),
              record=provenance.new_record(recipe(), seconds=round(seconds, 1)))
