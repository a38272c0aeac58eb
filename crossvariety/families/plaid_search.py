"""PLAID search: the top documents of a PLAID index (crossvariety.families.plaid) for ColBERT query
matrices, in torch; colbert-ai's candidate generation and defaults (see plaid.py's doc), and
exhaustive MaxSim for reference.
"""
import json
import logging
import time
from pathlib import Path

import numpy as np
import pyterrier as pt
import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..neural.batching import default_device
from .colbertxm import index_built
from .plaid import Codec

log = logging.getLogger(__name__)

class ColbertQueryEncoder(pt.Transformer):
    """query -> query_embs ([query_maxlen, dim] matrices), as pyterrier-colbert names them."""

    def __init__(self, encoder):
        self.encoder = encoder

    def transform(self, topics):
        return topics.assign(query_embs=list(self.encoder.encode_queries(
            topics["query"].tolist()).numpy()))


class PlaidSearch(pt.Transformer):
    """query_embs -> the top ``num_results`` documents of a PLAID index (see the module doc)."""

    def __init__(self, index_dir, num_results=1000, ncells=None, centroid_score_threshold=None,
                 ndocs=None, device=None, token_budget=None, verbose=True):
        from npids import Lookup
        index_dir = Path(index_dir)
        if not index_built(index_dir):
            raise UserError(f"{index_dir} is not a finished ColBERT-XM index; build it with "
                            "index_colbertxm.py")
        self.device = default_device(device)
        self.num_results = num_results
        big = num_results > 100  # colbert-ai's defaults by k
        self.ncells = ncells or (4 if big else 2 if num_results > 10 else 1)
        self.threshold = centroid_score_threshold if centroid_score_threshold is not None else \
            (0.4 if big else 0.45 if num_results > 10 else 0.5)
        self.ndocs = ndocs or (max(num_results * 4, 4096) if big else
                               1024 if num_results > 10 else 256)
        # padded vectors scored at once: cache-sized blocks on a CPU, few launches on a GPU
        self.token_budget = token_budget or (1 << 20 if self.device.type == "cuda" else 1 << 16)
        self.verbose = verbose
        start = time.time()
        self.meta = json.loads((index_dir / "meta.json").read_text())
        self.codec = Codec.load(index_dir / "codec.pt").to(self.device)
        load = (lambda name: torch.from_numpy(np.load(index_dir / name)).to(self.device))
        self.codes = load("codes.npy")
        self.residuals = load("residuals.npy")
        self.doclens = load("doclens.npy").long()
        self.offsets = torch.cumsum(self.doclens, 0) - self.doclens
        self.ivf = load("ivf.npy").long()
        ivf_lengths = load("ivf_lengths.npy").long()
        self.ivf_offsets = torch.cumsum(ivf_lengths, 0) - ivf_lengths
        self.ivf_lengths = ivf_lengths
        self.docnos = Lookup(index_dir / "docnos.npids")
        log.info("loaded %s (%d documents, %d vectors) onto %s in %.1fs", index_dir,
                 len(self.doclens), len(self.codes), self.device, time.time() - start)

    def _blocks(self, pids):
        """Documents ``pids``, shortest first, in blocks of at most token_budget padded vectors
        (little padding): (the block's indices into ``pids``, positions of its vectors, flat;
        mask [n, longest] of where they go)."""
        lengths = self.doclens[pids]
        order = torch.argsort(lengths)
        sorted_lengths = lengths[order].cpu().numpy()
        start = 0
        while start < len(order):
            # a block of n documents pads to its last (longest): n * length fits the budget
            padded = np.arange(1, len(order) - start + 1) * sorted_lengths[start:]
            stop = start + max(1, int(np.searchsorted(padded, self.token_budget, "right")))
            block = order[start:stop]
            span = torch.arange(int(sorted_lengths[stop - 1]), device=self.device)
            mask = span < lengths[block][:, None]
            yield block, (self.offsets[pids[block]][:, None] + span)[mask], mask
            start = stop

    @staticmethod
    def _maxsim(token_scores, mask):
        """Flat per-vector scores [vectors, query vectors] -> per-document MaxSim [n]."""
        padded = torch.full((*mask.shape, token_scores.shape[1]), -9999.0,
                            device=token_scores.device, dtype=token_scores.dtype)
        padded[mask] = token_scores
        return padded.max(1).values.sum(-1)

    def centroid_scores(self, pids, scores, keep=None):
        """Each document scored with its vectors' centroids only (PLAID's approximation);
        centroids outside ``keep`` left out. ``scores``: [centroids, query vectors]."""
        if keep is not None:
            scores = scores.masked_fill(~keep[:, None], -9999.0)
        out = torch.empty(len(pids), device=self.device)
        for block, positions, mask in self._blocks(pids):
            out[block] = self._maxsim(scores.index_select(0, self.codes[positions]), mask)
        return out

    def exact_scores(self, pids, Q):
        """MaxSim of Q with the documents' decompressed vectors."""
        out = torch.empty(len(pids), device=self.device)
        for block, positions, mask in self._blocks(pids):
            vectors = self.codec.decompress(self.codes[positions], self.residuals[positions])
            out[block] = self._maxsim(vectors @ Q.T, mask)
        return out

    def candidates(self, scores, k):
        """The documents of the ncells best centroids of every query vector; the probe widens
        until there are k (or every document)."""
        ncells = self.ncells
        while True:
            cells = scores.topk(min(ncells, len(scores)), dim=0).indices.flatten().unique()
            lengths = self.ivf_lengths[cells]
            index = torch.repeat_interleave(self.ivf_offsets[cells], lengths) + \
                torch.arange(int(lengths.sum()), device=self.device) - \
                torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
            pids = self.ivf[index].unique()
            if len(pids) >= min(k, len(self.doclens)) or ncells >= len(scores):
                return pids
            ncells *= 2

    @torch.inference_mode()
    def search(self, Q, k):
        """Q [query_maxlen, dim] -> (pids, scores), best first."""
        Q = Q.to(self.device, torch.float32)
        scores = self.codec.centroids @ Q.T  # [centroids, query vectors]
        pids = self.candidates(scores, k)
        if self.ndocs < len(pids):  # (each stage scores only when it has something to cut)
            keep = scores.max(1).values >= self.threshold
            pids = pids[self.centroid_scores(pids, scores, keep).topk(self.ndocs).indices]
        if self.ndocs // 4 < len(pids):
            pids = pids[self.centroid_scores(pids, scores).topk(self.ndocs // 4).indices]
        exact = self.exact_scores(pids, Q)
        top = exact.topk(min(k, len(pids)))
        return pids[top.indices], top.values

    def transform(self, topics):
        results, sizes = [], []
        for Q in tqdm(topics["query_embs"], unit="query", desc="PLAID search", mininterval=5,
                      disable=not self.verbose or len(topics) < 100
                      or not log.isEnabledFor(logging.INFO)):
            pids, scores = self.search(torch.as_tensor(Q), self.num_results)
            results.append((pids.cpu().numpy(), scores.float().cpu().numpy()))
            sizes.append(len(pids))
        sizes = np.array(sizes, dtype=np.int64)
        out = topics.drop(columns=["query_embs"]).iloc[np.repeat(np.arange(len(topics)), sizes)] \
            .reset_index(drop=True)
        pids = np.concatenate([p for p, _ in results]) if results else np.array([], np.int64)
        out["docid"] = pids
        out["docno"] = self.docnos.fwd[pids] if len(pids) else []
        out["score"] = np.concatenate([s for _, s in results]) if results else []
        out["rank"] = np.concatenate([np.arange(n) for n in sizes]) if len(sizes) else []
        return out


def exhaustive_search(Q, vectors, lengths, k):
    """MaxSim of Q against every document's exact vectors (the reference PLAID approximates).
    Returns (document indices, scores), best first."""
    doc_index = torch.repeat_interleave(torch.arange(len(lengths)), torch.as_tensor(lengths))
    token_scores = vectors.float() @ Q.float().T
    out = torch.full((len(lengths), Q.shape[0]), -9999.0)
    out.scatter_reduce_(0, doc_index[:, None].expand_as(token_scores), token_scores, "amax")
    top = out.sum(1).topk(min(k, len(lengths)))
    return top.indices, top.values


def check_language(index_dir, encoder):
    """An index answers only queries encoded with the adapter its documents were meant for."""
    meta = json.loads((Path(index_dir) / "meta.json").read_text())
    if (meta["language"], meta["doc_language"]) != (encoder.language, encoder.doc_language):
        raise UserError(f"{index_dir} was built for queries in {meta['language']} (documents "
                        f"encoded with {meta['doc_language']}), not {encoder.language} "
                        f"({encoder.doc_language}); pass the collection's --language or "
                        "rebuild the index with index_colbertxm.py --overwrite")


def colbert_retriever(index_dir, encoder, num_results=1000, device=None):
    """QueryEncoder >> PlaidSearch."""
    return ColbertQueryEncoder(encoder) >> PlaidSearch(index_dir, num_results, device=device)
