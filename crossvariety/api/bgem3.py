"""BGE-M3 as pyterrier-dr's ``BGEM3`` offers it, on the repository's fast encoder.

``BGEM3(model_name=..., batch_size=..., max_length=...)`` takes pyterrier-dr's arguments and
gives its transformers: ``query_encoder()`` (query -> query_vec), ``doc_encoder()``
(text -> doc_vec), ``text_scorer()``; the object itself picks one by the columns it is given,
as pyterrier-dr's does. Vectors are BGE-M3's dense vectors as FlagEmbedding computes them
(crossvariety.families.dense.BgeM3Encoder: length-sorted token-budget batches, bf16 on a GPU
by default, ``dtype="fp32"`` for the paper's precision).

``DenseIndex(path)`` is a pyterrier-dr ``FlexIndex`` (same files: ``np_retriever()`` and the
other retrievers work on it), with the repository's indexing (``indexer(model)``: whole chunks
sorted by length, resumable after a crash) and search (``retriever()``: exhaustive top-k on
the GPU, pyterrier-dr's numpy retriever on a CPU).
"""
import numpy as np
import pyterrier as pt
from pyterrier_dr import FlexIndex

from . import by_columns
from ..errors import UserError
from ..families import dense
from ..neural import chunks
from ..neural.batching import default_device


class BGEM3(pt.Transformer):
    """BGE-M3 dense encoding, pyterrier-dr's ``BGEM3`` arguments and transformers.

    ``model_name``: an HF id, a local folder, or a short name of the paper's checkpoints
    (bge-m3, bge-m3-lt-cafr, bge-m3-lt-afdt: crossvariety.models.MODELS). ``max_length``:
    tokens per text (the paper's 1024 by default; pyterrier-dr's is 8192). ``batch_size``: at
    most this many texts per forward pass (default: none, batches are bounded by
    ``batch_tokens`` tokens, which is faster). ``use_fp16``: half precision (bf16 here); or
    ``dtype``: auto (bf16 on a GPU, fp32 on a CPU), bf16, fp32, fp8. ``tok_model``: another
    tokenizer (default: the checkpoint's own, else BAAI/bge-m3's)."""

    def __init__(self, model_name="BAAI/bge-m3", batch_size=None, max_length=dense.MAX_LENGTH,
                 text_field="text", verbose=False, device=None, use_fp16=False, dtype=None,
                 tok_model=None, batch_tokens=0, compile="auto"):
        if dtype is None:
            dtype = "bf16" if use_fp16 else "auto"
        self.model_name = model_name
        self.batch_size = batch_size
        self.max_length = max_length
        self.text_field = text_field
        self.verbose = verbose
        self.encoder = dense.BgeM3Encoder(model_name, max_length=max_length,
                                          batch_tokens=batch_tokens, device=device,
                                          verbose=verbose, dtype=dtype, compile=compile,
                                          tok_model=tok_model, batch_size=batch_size)
        self.device = self.encoder.device

    def __repr__(self):
        return f"BGEM3({self.model_name!r})"

    def encode_queries(self, texts, batch_size=None):
        return self.encoder.encode(list(texts), desc="queries")

    def encode_docs(self, texts, batch_size=None):
        return self.encoder.encode(list(texts), desc="documents")

    def query_encoder(self, verbose=None, batch_size=None):
        """query -> query_vec (float32, L2-normalised), as pyterrier-dr's."""
        return QueryEncoder(self)

    def doc_encoder(self, verbose=None, batch_size=None):
        """text_field -> doc_vec, as pyterrier-dr's."""
        return DocEncoder(self)

    def text_scorer(self, verbose=None, batch_size=None, sim_fn=None):
        """(query, text) -> score (inner product of the vectors) and rank: re-ranking."""
        return TextScorer(self)

    def scorer(self, verbose=None, batch_size=None, sim_fn=None):
        return self.text_scorer()

    def transform(self, frame):
        return by_columns(self, frame)


class QueryEncoder(dense.QueryEncoder):
    """query -> query_vec; each distinct query encoded once."""

    def __init__(self, model):
        super().__init__(model.encoder)
        self.model = model

    def __repr__(self):
        return f"{self.model!r}.query_encoder()"

    def transform(self, topics):
        pt.validate.columns(topics, includes=["query"])
        unique, inverse = np.unique(topics["query"].to_numpy(dtype=str), return_inverse=True)
        vectors = self.encoder.encode(unique.tolist(), "queries") if len(unique) else \
            np.empty((0, self.encoder.dim), dtype=np.float32)
        return topics.assign(query_vec=list(vectors[inverse]))

    def subtransformers(self):
        return {}


class DocEncoder(pt.Transformer):
    """text -> doc_vec, in input order (length-sorted inside, per frame)."""

    def __init__(self, model):
        self.model = model
        self.batch_size = model.batch_size  # pyterrier's indexing pipelines read it

    def __repr__(self):
        return f"{self.model!r}.doc_encoder()"

    def transform(self, docs):
        field = self.model.text_field
        pt.validate.columns(docs, includes=[field])
        vectors = self.model.encoder.encode(docs[field].tolist(), "documents")
        return docs.assign(doc_vec=list(vectors))


class TextScorer(pt.Transformer):
    """(qid, query, docno, text) -> score = query_vec . doc_vec, ranked per query."""

    def __init__(self, model):
        self.model = model

    def __repr__(self):
        return f"{self.model!r}.text_scorer()"

    def transform(self, frame):
        field = self.model.text_field
        pt.validate.columns(frame, includes=["qid", "query", field])
        queries = QueryEncoder(self.model)(frame[["query"]])["query_vec"]
        docs = self.model.encoder.encode(frame[field].tolist(), "documents")
        scores = np.einsum("ij,ij->i", np.stack(queries.to_list()), docs) if len(frame) else \
            np.empty(0, dtype=np.float32)
        out = frame.drop(columns=["score", "rank"], errors="ignore").assign(score=scores)
        return pt.model.add_ranks(out)


class DenseIndex(FlexIndex):
    """A pyterrier-dr FlexIndex at ``path``, built and searched the repository's way.

    ``indexer(model)``: a pt.Indexer of {"docno", "text"} records that encodes them with
    ``model`` (a BGEM3) in chunks of ``chunk_docs`` sorted by length; a build that stopped
    resumes from its last chunk. ``indexer()`` with no model is FlexIndex's own (records with
    doc_vec: ``model.doc_encoder() >> index.indexer()``, as with pyterrier-dr).
    ``retriever()``: query_vec -> the top ``num_results`` by inner product."""

    def __init__(self, path, verbose=False, **options):
        super().__init__(path, verbose=verbose, **options)

    def __repr__(self):
        return f"DenseIndex({str(self.path)!r})"

    def indexer(self, model=None, *, mode="create", chunk_docs=100_000, shard="0/1"):
        if model is None:
            return super().indexer(mode=mode)
        if mode not in ("create", "overwrite"):
            raise ValueError(f"mode {mode!r}: choose create or overwrite")
        return DenseIndexer(self, model, mode, chunk_docs, shard)

    def index(self, inp, model=None):
        """Index {"docno", "text"} records with ``model`` (or records with doc_vec, without)."""
        return self.indexer(model).index(inp)

    def retriever(self, num_results=1000, device=None):
        """Exhaustive inner-product search: all vectors on the GPU when there is one
        (crossvariety.families.dense.TorchSearch), pyterrier-dr's np_retriever on a CPU."""
        if not self.built():
            raise UserError(f"{self.path} is not a built dense index: index() it first")
        if default_device(device).type == "cuda":
            return dense.TorchSearch(self.path, num_results, device)
        return self.np_retriever(num_results=num_results, drop_query_vec=True)


class DenseIndexer(pt.Indexer):
    def __init__(self, index, model, mode, chunk_docs, shard):
        self.dense_index, self.model, self.mode = index, model, mode
        self.chunk_docs, self.shard = chunk_docs, shard

    def __repr__(self):
        return f"{self.dense_index!r}.indexer({self.model!r})"

    def index_inputs(self):
        return [["docno", self.model.text_field]]

    def index(self, inp):
        index = self.dense_index
        if self.mode == "overwrite":  # the index and any chunks a stopped build left
            chunks.remove(index.path)
        elif index.built():
            raise UserError(f"{index.path} is already built; use it as it is, or pass "
                            "mode='overwrite' to rebuild it")
        field = self.model.text_field
        docs = ({"docno": str(d["docno"]), "text": d[field]} for d in inp)
        complete = dense.build_index(docs, self.model.encoder, index.path, shard=self.shard,
                                     chunk_docs=self.chunk_docs)
        if not complete:
            raise UserError(f"{index.path}: this shard ({self.shard}) is encoded; the index is "
                            "merged when every shard is")
        return DenseIndex(index.path)
