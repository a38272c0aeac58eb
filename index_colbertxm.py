"""Index a collection with ColBERT-XM into a PLAID index (compressed token vectors).

Token vectors have colbert-ai's semantics (``<s> [D] ... </s>``, 256 tokens, punctuation
dropped, linear 768 -> 128, L2-normalised), encoded with the X-MOD adapter of the collection's
language (French passages: fr_XX; Persian news: fa_IR), fast: chunks sorted by length,
token-budget batches, bf16 on a GPU. The index is colbert-ai's PLAID (nbits 2 by default):
centroids trained on colbert-ai's sample of the collection, residuals quantised per dimension;
search with run_mmarco.py / run_neuclir.py --model (same model, same language). Docnos are the
collection's own strings (neuCLIR's included): no id-mapping files.

Resumable and shardable: the first job trains the codec (it encodes colbert-ai's sample of the
collection; the other jobs wait for it), then every job encodes and compresses its chunks into
{index}.parts/; a killed job restarts at its first missing chunk. Several GPUs or machines split
a collection (sharing the index folder) as the ranks of one torchrun job (each rank its share of
the chunks; rank 0 merges them when all are done) or as the jobs of a job array (--shard i/n:
chunks k mod n = i; the job that finds every chunk done merges them; --merge-only merges after
the fact). Jobs on one index at once share the work through file locks and merge once.

--doc-lang-from-config encodes the documents with the checkpoint's saved default_language
(en_XX for colbert-xm, nl_XX for colbert-xm-lt-afdt), as the original code did by accident;
the index (and its runs) are then named {model}-doclang-config.

Examples:
  python index_colbertxm.py --dataset irds:mmarco/v2/fr --model colbert-xm
  torchrun --nproc_per_node 4 index_colbertxm.py --dataset irds:mmarco/v2/fr --model colbert-xm
  python index_colbertxm.py --dataset irds:mmarco/v2/dt --model colbert-xm-lt-afdt --shard 0/4   # + 1/4 2/4 3/4
  python index_colbertxm.py --dataset irds:neuclir/1/fa --model ./models/colbert-xm-ft-cafr
  python index_colbertxm.py --dataset data/my-collection --language gl --model colbert-xm
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
DATASET = "irds:mmarco/v2/fr"  # collection to index: an irds: id (irds:mmarco/v2/fr,
                               # irds:neuclir/1/fa) or a dataset folder
MODEL = "colbert-xm"  # ColBERT-XM checkpoint: colbert-xm, colbert-xm-lt-cafr, colbert-xm-lt-afdt, a
                      # Hugging Face id or a local path (Stanford/colbert-ai format)
LANGUAGE = ""  # X-MOD adapter for the documents and later the queries: a language code (fr, nl, fa)
               # or an adapter name (fa_IR); empty = the collection's language as ir_datasets
               # records it (needed for dataset folders)
DOC_LANG_FROM_CONFIG = False  # encode documents with the checkpoint's saved default_language (the
                              # original code's accidental path); index named {model}-doclang-config
INDEX = ""  # index folder; empty = {index_dir}/{model}[-doclang-config]/{dataset name}
NBITS = 2  # bits per dimension of the compressed residuals (colbert-ai: 1, 2 or 4)
KMEANS_NITERS = 4  # k-means iterations of the centroids
BATCH_TOKENS = 0  # padded tokens per batch; 0 = 131072 on a GPU, 16384 on a CPU
CHUNK_DOCS = 25000  # documents per saved chunk: the unit of resumption and of sharding
SHARD = "0/1"  # i/n: this job of a job array encodes chunks k with k mod n == i (all jobs share the
               # index folder; the first to start trains the codec, the others wait for it); under
               # torchrun, rank r of w takes shard i*w+r of n*w
MERGE_ONLY = False  # encode nothing; merge the chunks that the shards encoded into the index
DEVICE = ""  # torch device (cuda, cuda:1, cpu); empty = cuda if available (the local rank's under
             # torchrun), else cpu
DTYPE = "auto"  # precision: auto = bf16 on a GPU, fp32 on a CPU; fp32; fp8 (matmuls on fp8 tensor
                # cores, emulated elsewhere); recorded in the index; every shard must use the same
OVERWRITE = False  # re-encode from scratch even if the index or encoded chunks exist (an index
                   # built from other model files or another collection is an error without it: its
                   # metadata records what made it)
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import logging
import sys
from pathlib import Path

from crossvariety.neural import chunks, ranks
from crossvariety.families import colbertxm, indexes, plaid
from crossvariety.families.colbert import ColBERTXMEncoder
from crossvariety.data.datasets import Dataset
from crossvariety.errors import UsageError
from crossvariety.models import resolve_model
from crossvariety.runs import check_writable

log = logging.getLogger("index_colbertxm")
chunks.parse_shard(SHARD)
resolve_model(MODEL)
if not colbertxm.claims(MODEL):
    raise UsageError(f"{MODEL} is not a ColBERT-XM checkpoint (no artifact.metadata); BGE-M3 "
                     "models are indexed by index_bgem3.py")
if NBITS not in (1, 2, 4, 8):
    raise UsageError(f"--nbits {NBITS}: choose 1, 2, 4 or 8")
dataset = Dataset(DATASET)
language = LANGUAGE or dataset.docs_lang()
if not language:
    raise UsageError(f"the language of {DATASET} is unknown; pass --language (fr, nl, fa, ...)")
index = Path(INDEX) if INDEX else colbertxm.index_path(
    paths["index_dir"], MODEL, dataset.name, {"doc_lang_from_config": DOC_LANG_FROM_CONFIG})
device, rank, world = ranks.join_stage(DEVICE)
if OVERWRITE and rank == 0:
    chunks.remove(index)
ranks.barrier()
if indexes.check_index(index, colbertxm.index_built, colbertxm.index_inputs(MODEL, dataset),
                       fix="--overwrite rebuilds it, or pass another --index"):
    log.info("%s is already built; nothing to do (--overwrite rebuilds it)", index)
    sys.exit(0)
check_writable(index, folder=True, option="--index", replaced=True)
if MERGE_ONLY:
    if rank == 0:
        chunks.merge_when_complete(index, plaid.index_built, plaid.merge_chunks, required=True)
    sys.exit(0)
shard = chunks.rank_shard(SHARD, rank, world)
encoder = ColBERTXMEncoder(MODEL, language=language, doc_lang_from_config=DOC_LANG_FROM_CONFIG,
                           batch_tokens=BATCH_TOKENS, device=device, dtype=DTYPE)
log.info("indexing %s with %s (queries %s, documents %s) on %s (%s, %d tokens/batch) into %s, "
         "shard %s", DATASET, encoder.model_name, encoder.language, encoder.doc_language,
         encoder.device, encoder.precision, encoder.batch_tokens, index, shard)
# the identities again, now that the model is loaded (in the HF cache)
inputs = colbertxm.index_inputs(MODEL, dataset)
plaid.build_index(dataset.docs_iter, encoder, index, shard=shard, chunk_docs=CHUNK_DOCS,
                  total=dataset.docs_count(), nbits=NBITS, kmeans_niters=KMEANS_NITERS,
                  inputs=inputs)
