"""Encode a collection with BGE-M3 (dense) into a pyterrier-dr FlexIndex.

Vectors have BGE-M3's dense semantics (FlagEmbedding: [CLS] state, L2-normalised, the model's
tokenizer with truncation to --max-length, 1024 as in the paper), computed fast: chunks of
documents sorted by length, batches bounded by a token budget, bf16 and SDPA attention on a GPU,
compiled there (torch.compile), tokenisation ahead of the GPU in worker processes, the next
chunk read and the last one saved while a chunk is encoded. The index is readable by FlexIndex(DIR).np_retriever()
and .torch_retriever(). neuCLIR documents are encoded as title + newline + text.

Resumable and shardable: documents are encoded in chunks saved under {index}.parts/; a killed
job restarts at its first missing chunk. Several GPUs or machines split a collection (sharing
the index folder) as the ranks of one torchrun job (each rank encodes its share of the chunks;
rank 0 merges them when all are done) or as the jobs of a job array (--shard i/n encodes every
n-th chunk; the job that finds every chunk done merges them; --merge-only merges after the
fact). Jobs on one index at once (shards finishing together, the same command twice) share the
work through file locks and merge once (crossvariety/neural/chunks.py).

Examples:
  python index_bgem3.py --dataset irds:mmarco/v2/fr --model bge-m3
  torchrun --nproc_per_node 4 index_bgem3.py --dataset irds:mmarco/v2/fr --model bge-m3
  python index_bgem3.py --dataset irds:mmarco/v2/fr --model bge-m3-lt-cafr --shard 0/4   # + 1/4 2/4 3/4
  python index_bgem3.py --dataset irds:neuclir/1/fa --model ./models/bge-m3-cafr
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
DATASET = "irds:mmarco/v2/fr"  # collection to encode: an irds: id (irds:mmarco/v2/fr,
                               # irds:neuclir/1/fa) or a dataset folder
MODEL = "bge-m3"  # encoder: bge-m3, bge-m3-lt-cafr, bge-m3-lt-afdt, a Hugging Face id or a local
                  # path
INDEX = ""  # index folder; empty = {index_dir}/{model}/{dataset name}
MAX_LENGTH = 1024  # truncate documents to this many tokens (the paper: 1024; BGE-M3 allows 8192)
BATCH_TOKENS = 0  # padded tokens per batch; 0 = 262144 on a GPU, 16384 on a CPU
CHUNK_DOCS = 100000  # documents per saved chunk: the unit of resumption and of sharding
SHARD = "0/1"  # i/n: this job of a job array encodes chunks k with k mod n == i (all jobs share the
               # index folder); under torchrun, rank r of w takes shard i*w+r of n*w
MERGE_ONLY = False  # encode nothing; merge the chunks that the shards encoded into the index
DEVICE = ""  # torch device (cuda, cuda:1, cpu); empty = cuda if available (the local rank's under
             # torchrun), else cpu
DTYPE = "auto"  # precision: auto = bf16 on a GPU, fp32 on a CPU; fp32 (the paper's); fp8 (matmuls
                # on fp8 tensor cores, emulated elsewhere); recorded in the index
                # (crossvariety.json); every shard must use the same
COMPILE = "auto"  # torch.compile the encoder (fused kernels; ~2 min of compilation once): auto = on
                  # a GPU for chunks of 50,000 documents or more; on; off
TOKENIZER_WORKERS = "auto"  # tokenizer processes beside the GPU's (off the GIL of the process that
                            # drives it): auto = a quarter of the cores, at most 4, on a GPU, none
                            # on a CPU; or a number (0 = tokenise on a thread)
OVERWRITE = False  # re-encode from scratch even if the index or encoded chunks exist (an index
                   # built from other model files, another collection or --max-length is an error
                   # without it: its metadata records what made it)
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import logging
import sys
from pathlib import Path

from crossvariety.neural import chunks, compiling, ranks
from crossvariety.families import bgem3, dense, indexes
from crossvariety.neural.batching import worker_count
from crossvariety.data.datasets import Dataset
from crossvariety.models import resolve_model
from crossvariety.runs import check_writable

log = logging.getLogger("index_bgem3")
chunks.parse_shard(SHARD)
compiling.check(COMPILE)
worker_count(TOKENIZER_WORKERS, "cpu")  # a wrong value fails before the collection is opened
resolve_model(MODEL)  # an unknown name fails before the collection is opened
dataset = Dataset(DATASET)
index = Path(INDEX) if INDEX else bgem3.index_path(paths["index_dir"], MODEL, dataset.name, {})
device, rank, world = ranks.join_stage(DEVICE)
if OVERWRITE and rank == 0:
    chunks.remove(index)
ranks.barrier()
if indexes.check_index(index, bgem3.index_built, bgem3.index_inputs(MODEL, dataset, MAX_LENGTH),
                       fix="--overwrite rebuilds it, or pass another --index"):
    log.info("%s is already built; nothing to do (--overwrite rebuilds it)", index)
    sys.exit(0)
check_writable(index, folder=True, option="--index", replaced=True)
if MERGE_ONLY:
    if rank == 0:
        chunks.merge_when_complete(index, dense.index_built, dense.merge_chunks, required=True)
    sys.exit(0)
shard = chunks.rank_shard(SHARD, rank, world)
encoder = dense.BgeM3Encoder(MODEL, max_length=MAX_LENGTH, batch_tokens=BATCH_TOKENS,
                             device=device, dtype=DTYPE, compile=COMPILE,
                             tokenizer_workers=TOKENIZER_WORKERS)
log.info("encoding %s with %s on %s (%s, %d tokens/batch) into %s, shard %s", DATASET,
         encoder.model_name, encoder.device, encoder.precision, encoder.batch_tokens, index,
         shard)
# the identities again, now that the model is loaded (in the HF cache)
inputs = bgem3.index_inputs(MODEL, dataset, MAX_LENGTH)
dense.build_index(dataset.docs_iter, encoder, index, shard=shard, chunk_docs=CHUNK_DOCS,
                  total=dataset.docs_count(), inputs=inputs)
