"""ColBERT-XM (multi-vector, X-MOD adapters) and its PLAID index, as PyTerrier transformers.

``ColBERTXM(model_name=..., language=...)`` encodes with the adapter of one language (the
collection's: in the paper, variety queries are encoded with the high-resource language's
adapter too): ``query_encoder()`` (query -> query_embs, pyterrier-colbert's column),
``doc_encoder()`` (text -> doc_embs), ``text_scorer()`` (MaxSim of a query and a text).
Semantics are colbert-ai's (crossvariety.families.colbertxm).

``PlaidIndex(path)``: ``indexer(model)`` builds colbert-ai's compressed PLAID index (codec,
residuals, inverted lists; crossvariety.families.plaid), ``retriever()`` searches it
(query_embs -> docno, score, rank)::

    colbert = ColBERTXM(model_name="colbert-xm", language="fr")
    index = PlaidIndex("indexes/fr.plaid")
    index.index(dataset.get_corpus_iter(), colbert)
    pipeline = colbert.query_encoder() >> index.retriever(num_results=1000)
"""
import contextlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import torch

from . import by_columns
from ..errors import UserError
from ..families import colbertxm, plaid, plaid_search
from ..families.colbert import ColBERTXMEncoder
from ..neural import chunks


class ColBERTXM(pt.Transformer):
    """A ColBERT-XM checkpoint with the adapter of ``language`` (fr, nl, it, zh, fa_IR, ...; by
    default the checkpoint's saved one). ``model_name``: an HF id, a local folder (colbert-ai's
    Stanford format), or a short name (colbert-xm, colbert-xm-lt-cafr, colbert-xm-lt-afdt:
    crossvariety.models.MODELS). ``doc_lang_from_config``: documents with the saved adapter, as
    the original code did by accident. ``dtype``: auto (bf16 on a GPU, fp32 on a CPU), bf16,
    fp32, fp8. ``tok_model``: another tokenizer (default: the checkpoint's, else XLM-R's)."""

    def __init__(self, model_name="colbert-xm", language=None, text_field="text", verbose=False,
                 device=None, dtype="auto", tok_model=None, doc_lang_from_config=False,
                 batch_tokens=0):
        self.model_name = model_name
        self.text_field = text_field
        self.verbose = verbose
        self.encoder = ColBERTXMEncoder(model_name, language=language,
                                        doc_lang_from_config=doc_lang_from_config,
                                        batch_tokens=batch_tokens, device=device, dtype=dtype,
                                        verbose=verbose, tok_model=tok_model)

    language = property(lambda self: self.encoder.language)
    device = property(lambda self: self.encoder.device)

    def __repr__(self):
        return f"ColBERTXM({self.model_name!r}, language={self.language!r})"

    def query_encoder(self, verbose=None, batch_size=None):
        """query -> query_embs ([query_maxlen, dim] float32 matrices)."""
        return QueryEncoder(self)

    def doc_encoder(self, verbose=None, batch_size=None):
        """text -> doc_embs ([kept tokens, dim] matrices: punctuation dropped, as colbert-ai)."""
        return DocEncoder(self)

    def text_scorer(self, verbose=None, batch_size=None):
        """(query, text) -> score (MaxSim) and rank: re-ranking with ColBERT-XM."""
        return TextScorer(self)

    def scorer(self, verbose=None, batch_size=None):
        return self.text_scorer()

    def transform(self, frame):
        return by_columns(self, frame)


class QueryEncoder(plaid_search.ColbertQueryEncoder):
    def __init__(self, model):
        super().__init__(model.encoder)
        self.model = model

    def __repr__(self):
        return f"{self.model!r}.query_encoder()"

    def transform(self, topics):
        pt.validate.columns(topics, includes=["query"])
        if not len(topics):  # (pt.Experiment inspects a pipeline with an empty frame)
            return topics.assign(query_embs=pd.Series([], dtype=object))
        return super().transform(topics)

    def subtransformers(self):
        return {}


def _doc_matrices(encoder, texts):
    vectors, lengths = encoder.encode_docs(texts, desc="documents")
    return [v.float().numpy() for v in torch.split(vectors, lengths.tolist())]


class DocEncoder(pt.Transformer):
    def __init__(self, model):
        self.model = model

    def __repr__(self):
        return f"{self.model!r}.doc_encoder()"

    def transform(self, docs):
        pt.validate.columns(docs, includes=[self.model.text_field])
        if not len(docs):
            return docs.assign(doc_embs=pd.Series([], dtype=object))
        return docs.assign(doc_embs=_doc_matrices(self.model.encoder,
                                                  docs[self.model.text_field].tolist()))


class TextScorer(pt.Transformer):
    def __init__(self, model):
        self.model = model

    def __repr__(self):
        return f"{self.model!r}.text_scorer()"

    def transform(self, frame):
        pt.validate.columns(frame, includes=["qid", "query", self.model.text_field])
        if not len(frame):
            return frame.assign(score=pd.Series([], dtype="float32"), rank=pd.Series([], dtype=int))
        encoder = self.model.encoder
        queries, inverse = np.unique(frame["query"].to_numpy(dtype=str), return_inverse=True)
        Q = encoder.encode_queries(queries.tolist()).numpy()
        docs = _doc_matrices(encoder, frame[self.model.text_field].tolist())
        scores = np.array([(d @ Q[q].T).max(0).sum() if len(d) else 0.0
                           for q, d in zip(inverse, docs)], dtype=np.float32)
        out = frame.drop(columns=["score", "rank"], errors="ignore").assign(score=scores)
        return pt.model.add_ranks(out)


class PlaidIndex:
    """A PLAID index of ColBERT-XM token vectors at ``path`` (a folder)."""

    def __init__(self, path, verbose=False):
        self.path = Path(path)
        self.verbose = verbose

    def __repr__(self):
        return f"PlaidIndex({str(self.path)!r})"

    def built(self):
        return colbertxm.index_built(self.path)

    @property
    def meta(self):
        if not self.built():
            raise UserError(f"{self.path} is not a built PLAID index: index() it first")
        return json.loads((self.path / "meta.json").read_text())

    @property
    def language(self):
        """The adapter the documents were encoded for; encode queries with it too."""
        return self.meta["language"]

    def __len__(self):
        return self.meta["num_docs"]

    def indexer(self, model, *, mode="create", nbits=2, kmeans_niters=4, chunk_docs=25_000,
                shard="0/1"):
        """A pt.Indexer of {"docno", "text"} records encoded by ``model`` (a ColBERTXM):
        colbert-ai's codec (``nbits`` per dimension, k-means with ``kmeans_niters``) trained
        on a sample, then the collection in chunks; a build that stopped resumes."""
        if mode not in ("create", "overwrite"):
            raise ValueError(f"mode {mode!r}: choose create or overwrite")
        return PlaidIndexer(self, model, mode, nbits, kmeans_niters, chunk_docs, shard)

    def index(self, docs, model):
        """Index {"docno", "text"} records (an iterable, a function giving a fresh iterator of
        them, or a dataset with get_corpus_iter()) with ``model``."""
        return self.indexer(model).index(docs)

    def retriever(self, num_results=1000, ncells=None, centroid_score_threshold=None,
                  ndocs=None, device=None):
        """query_embs -> the top ``num_results`` documents (colbert-ai's search defaults by
        depth)."""
        return plaid_search.PlaidSearch(self.path, num_results, ncells=ncells,
                                 centroid_score_threshold=centroid_score_threshold, ndocs=ndocs,
                                 device=device, verbose=self.verbose)


class PlaidIndexer(pt.Indexer):
    def __init__(self, index, model, mode, nbits, kmeans_niters, chunk_docs, shard):
        self.plaid_index, self.model, self.mode = index, model, mode
        self.nbits, self.kmeans_niters = nbits, kmeans_niters
        self.chunk_docs, self.shard = chunk_docs, shard

    def __repr__(self):
        return f"{self.plaid_index!r}.indexer({self.model!r})"

    def index_inputs(self):
        return [["docno", self.model.text_field]]

    def index(self, docs):
        index = self.plaid_index
        if self.mode == "overwrite":  # the index and any chunks a stopped build left
            chunks.remove(index.path)
        elif index.built():
            raise UserError(f"{index.path} is already built; use it as it is, or pass "
                            "mode='overwrite' to rebuild it")
        field = self.model.text_field
        with _replayable(docs, field, index.path) as (fresh, total):
            complete = plaid.build_index(fresh, self.model.encoder, index.path, shard=self.shard,
                                         chunk_docs=self.chunk_docs, total=total,
                                         nbits=self.nbits, kmeans_niters=self.kmeans_niters)
        if not complete:
            raise UserError(f"{index.path}: this shard ({self.shard}) is encoded; the index is "
                            "merged when every shard is")
        return index


@contextlib.contextmanager
def _replayable(docs, field, path):
    """(a function giving a fresh iterator of {"docno", "text"}, their count or None): PLAID
    reads the collection twice (the codec's sample, then the chunks), so a one-pass iterable
    is written to a temporary file beside the index first."""
    def records(it):
        return ({"docno": str(d["docno"]), "text": d[field]} for d in it)

    if callable(docs) or hasattr(docs, "get_corpus_iter"):
        source = docs if callable(docs) else docs.get_corpus_iter
        yield (lambda: records(source())), None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.docs-") as tmp:
        spool, total = Path(tmp) / "docs.jsonl", 0
        with open(spool, "w", encoding="utf-8") as f:
            for doc in records(docs):
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
                total += 1

        def replay():
            with open(spool, encoding="utf-8") as f:
                for line in f:
                    yield json.loads(line)
        yield replay, total
