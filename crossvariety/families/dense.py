"""BGE-M3 dense retrieval: a fast encoder, resumable sharded indexing into a pyterrier-dr
FlexIndex, and exhaustive search on the GPU (or pyterrier-dr's numpy retriever on a CPU).

The encoder has BGE-M3's dense semantics as FlagEmbedding computes them: the tokenizer with
special tokens and truncation to ``max_length``, the [CLS] state, L2-normalised. It differs in how
the work is done: a whole chunk of texts is sorted by length (not FlagEmbedding's chunks of 64
that pyterrier-dr feeds it), batches are bounded by a token budget, bf16 and SDPA attention on a
GPU (``dtype``: crossvariety.neural.precision), compiled for long jobs on a GPU
(crossvariety.neural.compiling), tokenisation ahead of the model and off the GIL (crossvariety.neural.tokens).
"""
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import torch
from tqdm.auto import tqdm

from ..neural import chunks, compiling, precision
from ..neural.batching import ChunkTokenizer, default_device, no_cudnn_attention, padded_batches, worker_count
from ..neural.chunks import parts_dir
from ..errors import UserError
from ..models import fetch, from_pretrained, load_tokenizer, resolve_model
from ..runs import atomic_path
from ..neural.tokens import FlatTokenizer
from .bgem3 import index_built

log = logging.getLogger(__name__)
MAX_LENGTH = 1024  # the paper's setting (BGE-M3 allows 8192)


class ClsVectors(torch.nn.Module):
    """(input_ids, attention_mask) -> the L2-normalised [CLS] states (float32)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return torch.nn.functional.normalize(hidden[:, 0].float(), dim=-1)


class BgeM3Encoder:
    """texts -> L2-normalised [CLS] vectors (float32 numpy), in input order.

    ``compile``: auto (on a GPU, for long jobs), on, off; ``tokenizer_workers``: tokenizer
    processes for long jobs (auto: some on a GPU, none on a CPU). ``tok_model``: the tokenizer
    (HF id or path); by default the checkpoint's own, else BAAI/bge-m3's. ``batch_size``: at
    most this many texts per batch, besides the token budget (pyterrier-dr's argument)."""

    def __init__(self, model="bge-m3", max_length=MAX_LENGTH, batch_tokens=0, device=None,
                 chunk=100_000, verbose=True, dtype="auto", compile="auto",
                 tokenizer_workers="auto", tok_model=None, batch_size=None):
        from transformers import AutoModel
        self.model_name = resolve_model(model)
        self.max_length = max_length
        self.device = default_device(device)
        self.precision = precision.resolve(dtype, self.device)
        no_cudnn_attention(self.device)
        # Token budget per batch: large on a GPU (throughput), moderate on a CPU (memory).
        self.batch_tokens = batch_tokens or (262144 if self.device.type == "cuda" else 16384)
        self.batch_size = batch_size
        self.verbose = verbose
        # the weights and tokenizer only (a sentence-transformers folder may hold more)
        folder = fetch(self.model_name, "bge-m3")
        self.tokenizer, self.tokenizer_name = load_tokenizer(self.model_name, "bge-m3", tok_model)
        self.tokenization = ChunkTokenizer(FlatTokenizer(self.tokenizer, max_length), chunk,
                                           worker_count(tokenizer_workers, self.device))
        self.model = precision.prepare(
            from_pretrained(AutoModel, str(folder), dtype=precision.weights(self.precision),
                            add_pooling_layer=False, attn_implementation="sdpa"),
            self.precision, self.device)
        self.dim = self.model.config.hidden_size
        self.compiler = compiling.Compiler(ClsVectors(self.model), compile, self.device,
                                           "the BGE-M3 encoder")

    def __str__(self):
        return f"BgeM3Encoder({self.model_name}, max_length={self.max_length}, {self.precision})"

    @torch.inference_mode()
    def encode(self, texts, desc="BGE-M3 encode"):
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        cls_vectors = self.compiler.for_job(len(texts))
        with tqdm(total=len(texts), unit="text", desc=desc, mininterval=2,
                  disable=not self.verbose or len(texts) < 1000
                  or not log.isEnabledFor(logging.INFO)) as progress:
            for offset, tokens in self.tokenization.chunks(texts):
                vectors = torch.empty((len(tokens), self.dim), dtype=torch.float32,
                                      device=self.device)
                for batch in padded_batches(tokens, self.tokenizer.pad_token_id,
                                            self.batch_tokens, self.device, self.batch_size):
                    vectors[batch.positions] = cls_vectors(batch.input_ids, batch.attention_mask)
                    progress.update(len(batch.positions))
                out[offset:offset + len(tokens)] = vectors.cpu().numpy()  # one sync per chunk
        return out


class QueryEncoder(pt.Transformer):
    """query -> query_vec, as pyterrier-dr's retrievers expect."""

    def __init__(self, encoder):
        self.encoder = encoder

    def transform(self, topics):
        return topics.assign(query_vec=list(self.encoder.encode(topics["query"], "queries")))


# ----------------------------------------------------------------------------- indexing
# Chunks under {index}.parts/ (crossvariety.neural.chunks), merged in order into a FlexIndex at
# {index}, which appears only when complete.

def encode_chunks(docs, encoder, index_dir, shard="0/1", chunk_docs=100_000, total=None,
                  inputs=None):
    """Encode this shard's chunks of ``docs`` ({"docno", "text"}, or a function giving them)
    into {index}.parts/, skipping chunks already there (chunks.encode_chunks). Returns the
    number of chunks of the whole collection. ``inputs``: the identities of the model and the
    collection (crossvariety.families.bgem3.index_inputs), recorded in the index's metadata."""
    meta = {"model": encoder.model_name, "max_length": encoder.max_length,
            "dtype": encoder.precision, **(inputs or {})}
    return chunks.encode_chunks(
        docs, lambda texts, k: {"vectors": encoder.encode(texts, desc=f"chunk {k}")}, index_dir,
        meta, shard, chunk_docs, total, desc="BGE-M3 index")


def write_flex_index(path, parts):
    """A pyterrier-dr FlexIndex at ``path`` (the files its indexer writes: vecs.f4, docnos.npids,
    pt_meta.json) from (docnos, vectors) arrays, a whole array at a time: the indexer takes a
    dict per vector, which for 8.8M vectors costs minutes."""
    from npids import Lookup
    from pyterrier_dr import FlexIndex
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    count, size = 0, None
    with open(path / "vecs.f4", "wb") as f, Lookup.builder(path / "docnos.npids") as lookup:
        for docnos, vectors in parts:
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            if size is not None and vectors.shape[1] != size:
                raise ValueError(f"vectors of {vectors.shape[1]} dims after vectors of {size}")
            size = vectors.shape[1]
            f.write(vectors.tobytes())
            for docno in docnos:
                lookup.add(str(docno))
            count += len(docnos)
    (path / "pt_meta.json").write_text(json.dumps({
        "type": FlexIndex.ARTIFACT_TYPE, "format": FlexIndex.ARTIFACT_FORMAT, "vec_size": size,
        "doc_count": count}))


def merge_chunks(index_dir):
    """Write the FlexIndex at ``index_dir`` from its encoded chunks, then remove the chunks."""
    import shutil
    files = chunks.complete_parts(index_dir)
    parts = parts_dir(index_dir)

    def arrays():
        for path in files:
            with np.load(path) as part:
                yield part["docnos"], part["vectors"]

    start = time.time()
    with atomic_path(index_dir) as tmp:
        write_flex_index(tmp, arrays())
        shutil.copy(parts / "meta.json", tmp / "crossvariety.json")
    shutil.rmtree(parts)
    log.info("merged %d chunks into %s in %.1fs", len(files), index_dir, time.time() - start)


def build_index(docs, encoder, index_dir, shard="0/1", chunk_docs=100_000, total=None,
                inputs=None):
    """Encode this shard's chunks; merge into the FlexIndex once every chunk is encoded, once,
    whichever job or rank gets there (chunks.build). ``docs``: documents, or a function giving
    a fresh iterator of them. Returns True when the index is complete. ``inputs``: as
    encode_chunks."""
    return chunks.build(
        index_dir, index_built,
        lambda: encode_chunks(docs, encoder, index_dir, shard, chunk_docs, total, inputs),
        merge_chunks)


# ----------------------------------------------------------------------------- search

class TorchSearch(pt.Transformer):
    """Exhaustive inner-product search: every document vector on the device (fp16 on a GPU),
    queries in batches, matmul + top-k. The GPU path of dense retrieval; also runs on a CPU.

    The run frame is built while the device works: a batch's top-k is copied to the host and
    turned into docnos while the next batch is scored, and the frame's columns are numpy
    arrays of Python strings (no per-row pandas work, no conversion to Arrow strings)."""

    def __init__(self, index_dir, num_results=1000, device=None, query_batch=0,
                 doc_block=4_000_000):
        from pyterrier_dr import FlexIndex
        device = default_device(device)
        docnos, vectors, meta = FlexIndex(str(index_dir)).payload()
        start = time.time()
        # Copied in blocks: the memmap never has to fit in host memory at once.
        on_device = torch.empty((meta["doc_count"], meta["vec_size"]), device=device,
                                dtype=torch.float16 if device.type == "cuda" else torch.float32)
        for b in range(0, meta["doc_count"], doc_block):
            block = torch.from_numpy(np.array(vectors[b:b + doc_block]))  # a writable copy
            on_device[b:b + doc_block] = block.to(device, on_device.dtype)
        # every docno as a Python string once: looking up a run's 6.98M docnos in the npids
        # file for each query set takes seconds; indexing this array takes 0.1 s
        self._setup(docnos.fwd[np.arange(meta["doc_count"])], on_device, num_results, query_batch)
        log.info("loaded %d vectors of %s onto %s (%s) in %.1fs", meta["doc_count"], index_dir,
                 device, str(on_device.dtype).replace("torch.", ""), time.time() - start)

    @classmethod
    def from_vectors(cls, docnos, vectors, num_results=1000, query_batch=0):
        """Search over ``vectors`` (a [docs, dim] tensor, on its device) named by ``docnos``."""
        search = cls.__new__(cls)
        search._setup(docnos, vectors, num_results, query_batch)
        return search

    def _setup(self, docnos, vectors, num_results, query_batch):
        self.docnos = np.asarray(docnos, dtype=object)
        self.vectors, self.device, self.num_results = vectors, vectors.device, num_results
        # Queries per batch: the batch's score matrix [batch, docs] within a memory budget (a
        # quarter of the GPU's free memory; 1 GB on a CPU), at most 1024 queries.
        budget = torch.cuda.mem_get_info(self.device)[0] // 4 if self.device.type == "cuda" \
            else 2 ** 30
        per_query = max(1, len(vectors)) * vectors.element_size()
        self.query_batch = query_batch or int(max(1, min(1024, budget // per_query)))

    @torch.inference_mode()
    def transform(self, topics):
        k = min(self.num_results, len(self.vectors))
        query_vecs = np.stack(topics["query_vec"].to_list()).astype(np.float32)
        n = len(query_vecs)
        scores = np.empty((n, k), dtype=np.float32)
        docids = np.empty((n, k), dtype=np.int64)
        docnos = np.empty(n * k, dtype=object)
        gpu = self.device.type == "cuda"

        def collect(start, values, indices, done):
            if done is not None:
                done.synchronize()
            end = start + len(values)
            scores[start:end], docids[start:end] = values.numpy(), indices.numpy()
            docnos[start * k:end * k] = self.docnos[docids[start:end].ravel()]

        pending = None
        for start in range(0, n, self.query_batch):
            q = torch.from_numpy(query_vecs[start:start + self.query_batch]).to(
                self.device, self.vectors.dtype)
            top = torch.topk(q @ self.vectors.T, k, dim=1)
            values, indices = top.values.float(), top.indices
            done = None
            if gpu:  # copied into pinned memory without waiting; collected after the next launch
                host = (torch.empty(values.shape, dtype=values.dtype, pin_memory=True),
                        torch.empty(indices.shape, dtype=indices.dtype, pin_memory=True))
                host[0].copy_(values, non_blocking=True)
                host[1].copy_(indices, non_blocking=True)
                values, indices = host
                done = torch.cuda.Event()
                done.record()
            if pending is not None:
                collect(*pending)
            pending = (start, values, indices, done)
        if pending is not None:
            collect(*pending)
        columns = {c: topics[c].to_numpy().repeat(k) for c in topics.columns if c != "query_vec"}
        columns.update(docid=docids.ravel(), docno=docnos, score=scores.ravel(),
                       rank=np.tile(np.arange(k), n))
        # object columns stay object: pandas would otherwise convert 6.98M strings to Arrow
        return pd.DataFrame({c: pd.Series(v, dtype=object, copy=False) if v.dtype == object
                             else v for c, v in columns.items()}, copy=False)


def dense_retriever(index_dir, encoder, num_results=1000, device=None):
    """QueryEncoder >> search: TorchSearch on a GPU, pyterrier-dr's np_retriever on a CPU."""
    from pyterrier_dr import FlexIndex
    if not index_built(index_dir):
        raise UserError(f"{index_dir} is not a finished dense index; build it with "
                        "index_bgem3.py")
    if default_device(device).type == "cuda":
        search = TorchSearch(index_dir, num_results, device)
    else:
        search = FlexIndex(str(index_dir), verbose=False).np_retriever(num_results=num_results,
                                                                       drop_query_vec=True)
    return QueryEncoder(encoder) >> search
