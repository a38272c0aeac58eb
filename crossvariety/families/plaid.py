"""PLAID: a compressed multi-vector index of ColBERT token vectors and its search, in torch.

colbert-ai's algorithm (Santhanam et al., 2022) and defaults, without its integer passage ids,
C++ JIT extensions or faiss:
- codec: k-means centroids (2^floor(log2(16 sqrt(#vectors))) of them, kmeans_niters Lloyd
  iterations on a sample of 16 sqrt(120 #docs) documents, normalised), and per dimension a
  residual quantised to 2^nbits buckets (cut-offs and weights from quantiles of held-out
  residuals). A vector is stored as its centroid id (int32) + nbits per dimension.
- search of a query matrix Q: the ncells best centroids of every query vector give candidate
  documents (inverted lists); their centroid-only scores, first with centroids scoring below
  centroid_score_threshold left out, keep ndocs then ndocs/4 documents; those are decompressed
  and scored exactly (MaxSim), and the top k returned. Defaults for k > 100 as colbert-ai's:
  ncells 4, threshold 0.4, ndocs max(4k, 4096).
- one difference: when the probed cells hold fewer than k documents (small collections), the
  probe widens (ncells doubled) until they do, so a query gets k results whenever the
  collection has k documents; colbert-ai returns fewer.

An index is a folder: meta.json, codec.pt, codes.npy, residuals.npy, doclens.npy, ivf.npy,
ivf_lengths.npy and docnos.npids (the collection's own docno strings). Its search:
crossvariety.families.plaid_search. Like the dense indexes it
is built in chunks under {index}.parts/ (resumable, shardable with --shard i/n or torchrun: the
first job trains the codec, the others wait for it), then merged into the folder, which appears
only complete.
"""
import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..neural import chunks
from ..neural.chunks import parts_dir
from ..errors import UserError
from ..runs import atomic_path
from .colbertxm import index_built

log = logging.getLogger(__name__)
SAMPLE_SEED = 12345  # colbert-ai's
KMEANS_SEED = 123  # colbert-ai's (faiss)


# ----------------------------------------------------------------------------- the codec

def sample_size(num_docs):
    """colbert-ai's number of documents sampled to train the codec."""
    return min(1 + int(16 * math.sqrt(120 * num_docs)), num_docs)


def num_partitions(num_vectors):
    return int(2 ** math.floor(math.log2(16 * math.sqrt(num_vectors))))


def kmeans(points, k, niters, seed=KMEANS_SEED, block=1 << 16):
    """Lloyd's k-means (L2), initialised with k distinct random points, as faiss does; an empty
    cluster keeps its centroid. Returns [k, dim] float32 centroids."""
    generator = torch.Generator().manual_seed(seed)
    points = points.float()
    centroids = points[torch.randperm(len(points), generator=generator)[:k].to(points.device)]
    for _ in range(niters):
        sums = torch.zeros_like(centroids)
        counts = torch.zeros(k, device=points.device)
        half_norms = (centroids * centroids).sum(1) / 2
        for b in range(0, len(points), block):
            x = points[b:b + block]
            nearest = (x @ centroids.T - half_norms).argmax(1)
            sums.index_add_(0, nearest, x)
            counts.index_add_(0, nearest, torch.ones(len(x), device=points.device))
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


class Codec:
    """Centroids + nbits-per-dimension residuals (colbert-ai's ResidualCodec)."""

    def __init__(self, centroids, bucket_cutoffs, bucket_weights, nbits):
        self.centroids = centroids.float()
        self.bucket_cutoffs = bucket_cutoffs.float()
        self.bucket_weights = bucket_weights.float()
        self.nbits = nbits
        per_byte = 8 // nbits
        # byte -> the per_byte bucket ids it packs, first dimension in the high bits
        shifts = torch.arange(per_byte - 1, -1, -1) * nbits
        self.unpack_table = ((torch.arange(256)[:, None] >> shifts) & (2 ** nbits - 1)).to(
            torch.uint8)
        # byte -> the residual weights of the dimensions it packs
        self.weight_table = self.bucket_weights.to(self.unpack_table.device)[
            self.unpack_table.long()].contiguous()

    @classmethod
    def train(cls, vectors, nbits=2, niters=4, num_centroids=None):
        """From a sample of vectors: 95% train the centroids, 5% (up to 50,000) give the
        residual buckets, as in colbert-ai."""
        generator = torch.Generator().manual_seed(SAMPLE_SEED)
        vectors = vectors[torch.randperm(len(vectors), generator=generator).to(vectors.device)]
        heldout_size = min(50_000, int(0.05 * len(vectors)))
        train, heldout = vectors[:len(vectors) - heldout_size], vectors[len(vectors) - heldout_size:]
        k = num_centroids or num_partitions(len(vectors))
        k = min(k, 2 ** int(math.log2(len(train))))  # tiny collections: no more than the points
        centroids = torch.nn.functional.normalize(kmeans(train, k, niters), dim=-1)
        if not len(heldout):
            heldout = train
        codes = cls._nearest(centroids, heldout.float())
        residuals = (heldout.float() - centroids[codes]).flatten()
        options = 2 ** nbits
        quantiles = torch.arange(options, device=residuals.device, dtype=torch.float32) / options
        sample = residuals[:16_000_000]  # torch.quantile's limit on its input size
        cutoffs = torch.quantile(sample, quantiles[1:])
        weights = torch.quantile(sample, quantiles + 0.5 / options)
        return cls(centroids.cpu(), cutoffs.cpu(), weights.cpu(), nbits)

    @staticmethod
    def _nearest(centroids, vectors, block=1 << 16):
        return torch.cat([(centroids @ vectors[b:b + block].T).argmax(0)
                          for b in range(0, len(vectors), block)]) if len(vectors) else \
            torch.empty(0, dtype=torch.long, device=vectors.device)

    def to(self, device):
        return Codec(self.centroids.to(device), self.bucket_cutoffs.to(device),
                     self.bucket_weights.to(device), self.nbits)

    def compress(self, vectors):
        """vectors [n, dim] -> (codes int32 [n], packed residual buckets uint8 [n, dim*nbits/8])."""
        vectors = vectors.to(self.centroids.device, torch.float32)
        codes = self._nearest(self.centroids, vectors)
        buckets = torch.bucketize(vectors - self.centroids[codes], self.bucket_cutoffs)
        per_byte = 8 // self.nbits
        buckets = buckets.view(len(vectors), -1, per_byte)
        shifts = torch.arange(per_byte - 1, -1, -1, device=buckets.device) * self.nbits
        packed = (buckets << shifts).sum(-1).to(torch.uint8)
        return codes.to(torch.int32), packed

    def decompress(self, codes, packed):
        """(centroid ids [n], packed residuals [n, dim*nbits/8]) -> normalised float32
        vectors [n, dim]."""
        residuals = self.weight_table.index_select(0, packed.flatten().int()).view(len(codes), -1)
        vectors = self.centroids.index_select(0, codes) + residuals
        return torch.nn.functional.normalize(vectors, p=2, dim=-1)

    def save(self, path):
        torch.save({"centroids": self.centroids, "bucket_cutoffs": self.bucket_cutoffs,
                    "bucket_weights": self.bucket_weights, "nbits": self.nbits}, path)

    @classmethod
    def load(cls, path, device="cpu"):
        state = torch.load(path, map_location=device, weights_only=True)
        return cls(state["centroids"], state["bucket_cutoffs"], state["bucket_weights"],
                   state["nbits"])


# ----------------------------------------------------------------------------- indexing

def codec_for(parts, train):
    """The codec of the chunks in ``parts``: the one saved there, or ``train()`` (which saves it)
    by the first job to come; the others wait for it on a lock, not polling, and if it stops
    before saving the codec, the next one trains it. Training is seeded: whichever job trains
    the codec, it is the same."""
    codec_file = parts / "codec.pt"
    if not codec_file.is_file():
        with chunks.locked(parts / "codec.lock", f"another job training the codec ({codec_file})",
                           remove=True):
            if not codec_file.is_file():
                return train()
    return Codec.load(codec_file)


def train_codec(docs, encoder, parts, total, nbits, kmeans_niters):
    """Encode colbert-ai's sample of the collection and train the codec into {parts}/codec.pt."""
    codec_file = parts / "codec.pt"
    start = time.time()

    def sample(total):
        chosen = np.random.default_rng(SAMPLE_SEED).choice(total, sample_size(total), replace=False)
        wanted, texts, count = set(chosen.tolist()), [], 0
        for count, doc in enumerate(tqdm(docs(), total=total, unit="doc", desc="codec sample",
                                         mininterval=5,
                                         disable=not log.isEnabledFor(logging.INFO)), start=1):
            if count - 1 in wanted:
                texts.append(doc["text"])
        return texts, count

    texts, count = sample(total)
    if count != total:  # the collection's metadata was wrong (or a partial copy): sample again
        log.warning("the collection has %d documents, not the %d expected; sampling again",
                    count, total)
        texts, count = sample(count)
        total = count
    size = len(texts)
    vectors, lengths = encoder.encode_docs(texts, desc="codec sample")
    estimate = int(total * lengths.mean()) if len(lengths) else 0
    if not len(vectors):
        raise UserError("the sampled documents have no tokens to index; is the collection empty?")
    codec = Codec.train(vectors.to(encoder.device), nbits, kmeans_niters,
                        num_partitions(max(estimate, 1)))
    with atomic_path(codec_file) as tmp:
        codec.save(tmp)
    log.info("codec: %d centroids, %d-bit residuals, from %d sampled documents (%d vectors) "
             "in %.1fs", len(codec.centroids), nbits, size, len(vectors), time.time() - start)
    return codec


def encode_chunks(docs, encoder, index_dir, shard="0/1", chunk_docs=25_000, total=None, nbits=2,
                  kmeans_niters=4, inputs=None):
    """Train the codec, or wait for the job training it, then encode and compress this shard's
    chunks of the collection into {index}.parts/, skipping chunks already there. ``docs`` is a
    function giving a fresh iterator of {"docno", "text"}. Returns the number of chunks.
    ``inputs``: the identities of the model and the collection
    (crossvariety.families.colbertxm.index_inputs), recorded in the index's metadata."""
    parts = parts_dir(index_dir)
    parts.mkdir(parents=True, exist_ok=True)
    if total is None:
        total = sum(1 for _ in docs())
    codec = codec_for(parts, lambda: train_codec(docs, encoder, parts, total, nbits,
                                                 kmeans_niters)).to(encoder.device)

    def encode(texts, k):
        vectors, lengths = encoder.encode_docs(texts, desc=f"chunk {k}")
        codes, residuals = zip(*(codec.compress(vectors[b:b + (1 << 18)].to(encoder.device))
                                 for b in range(0, max(len(vectors), 1), 1 << 18)))
        return {"codes": torch.cat(codes).cpu().numpy(),
                "residuals": torch.cat(residuals).cpu().numpy(),
                "doclens": lengths.astype(np.int32)}

    meta = {"model": encoder.model_name, "language": encoder.language,
            "doc_language": encoder.doc_language, "saved_language": encoder.saved_language,
            "settings": encoder.settings, "nbits": nbits, "kmeans_niters": kmeans_niters,
            "dtype": encoder.precision, **(inputs or {})}
    return chunks.encode_chunks(docs, encode, index_dir, meta, shard, chunk_docs, total,
                                desc="ColBERT-XM index")


def merge_chunks(index_dir):
    """Write the index folder from the encoded chunks (codes, residuals, lengths, the inverted
    lists from centroid to documents, docnos), then remove the chunks."""
    from npids import Lookup
    files = chunks.complete_parts(index_dir)
    parts = parts_dir(index_dir)
    start = time.time()
    doclens, num_vectors = [], 0
    for path in files:
        with np.load(path) as part:
            doclens.append(part["doclens"])
            width = part["residuals"].shape[1]
    doclens = np.concatenate(doclens)
    num_vectors = int(doclens.sum())
    codec = Codec.load(parts / "codec.pt")
    with atomic_path(index_dir) as tmp:
        tmp.mkdir()
        codes = np.lib.format.open_memmap(tmp / "codes.npy", "w+", np.int32, (num_vectors,))
        residuals = np.lib.format.open_memmap(tmp / "residuals.npy", "w+", np.uint8,
                                              (num_vectors, width))
        offset = 0
        with Lookup.builder(tmp / "docnos.npids") as docnos:
            for path in files:
                with np.load(path) as part:
                    size = len(part["codes"])
                    codes[offset:offset + size] = part["codes"]
                    residuals[offset:offset + size] = part["residuals"]
                    offset += size
                    for docno in part["docnos"]:
                        docnos.add(str(docno))
        codes.flush()
        residuals.flush()
        # inverted lists: for each centroid, the sorted distinct documents with a vector there
        pids = np.repeat(np.arange(len(doclens), dtype=np.int64), doclens)
        keys = np.unique(np.asarray(codes, dtype=np.int64) * len(doclens) + pids)
        np.save(tmp / "ivf.npy", (keys % len(doclens)).astype(np.int32))
        np.save(tmp / "ivf_lengths.npy",
                np.bincount(keys // len(doclens), minlength=len(codec.centroids)))
        np.save(tmp / "doclens.npy", doclens)
        shutil.copy(parts / "codec.pt", tmp / "codec.pt")
        meta = json.loads((parts / "meta.json").read_text())
        meta.update(num_docs=len(doclens), num_vectors=num_vectors,
                    num_centroids=len(codec.centroids))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(parts)
    log.info("merged %d chunks into %s: %d documents, %d vectors, %.1f bytes/document, in %.1fs",
             len(files), index_dir, len(doclens), num_vectors, index_bytes(index_dir) /
             max(len(doclens), 1), time.time() - start)


def index_bytes(index_dir):
    return sum(p.stat().st_size for p in Path(index_dir).iterdir() if p.is_file())


def build_index(docs, encoder, index_dir, shard="0/1", chunk_docs=25_000, total=None, nbits=2,
                kmeans_niters=4, inputs=None):
    """Encode this shard's chunks; merge into the index once every chunk is encoded, once,
    whichever job or rank gets there (chunks.build). ``docs``: a function giving a fresh
    iterator of {"docno", "text"}. Returns True when complete. ``inputs``: as encode_chunks."""
    return chunks.build(
        index_dir, index_built,
        lambda: encode_chunks(docs, encoder, index_dir, shard, chunk_docs, total, nbits,
                              kmeans_niters, inputs), merge_chunks)
