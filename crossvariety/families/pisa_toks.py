"""PISA's index of analysed documents, inverted with numpy: the same files as pyterrier_pisa's
``PisaIndex(path, stemmer="none").toks_indexer(scale=1)`` (0.4.x), made several times faster.

pyterrier_pisa's toks indexer inverts one ``{term: count}`` dict per document in a Python loop
over every posting, in the process that also reads the collection; with character n-grams (~5x
the postings of words) that loop, not the analysis, set the build time. Here each analysis
worker sends a batch of documents as arrays (``analyse_batch``: its distinct terms, a term code
and a count per posting, the distinct terms of each document), and the main process inverts
them with a stable sort. The batch files, PISA's merge (``_pisathon.merge_inv``), the
re-mapping of term ids into lexicographic order and the binary lexicons follow
pyterrier_pisa's ``PisaToksIndexer._index`` step by step; tests/test_bm25.py checks that every
file of an index is byte-identical to the one ``PisaToksIndexer`` writes.
"""
import collections
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError

# documents per batch file of the inversion, as pyterrier_pisa's default (its memory bound)
BATCH_DOCUMENTS = 100_000
# recorded with every index: an index without it was inverted by pyterrier_pisa, whose posting
# lists are wrong beyond its first batch, so such an index is rebuilt
INVERSION = "crossvariety.pisa_toks 1"

AnalysedBatch = collections.namedtuple("AnalysedBatch", "docnos terms codes counts sizes")
AnalysedBatch.__doc__ = """Documents as the workers send them: their docnos; the batch's
distinct terms, in order of first appearance; per posting (a document's distinct term, in order
of first appearance in it) the term's code (its index in ``terms``) and its count; per document
its number of postings."""


def analyse_batch(analyzer, batch):
    """(docno, text) pairs -> an AnalysedBatch of their terms (``analyzer(text)``)."""
    docnos, keys, counts, sizes = [], [], [], []
    for docno, text in batch:
        frequencies = collections.Counter(analyzer(text))
        docnos.append(docno)
        keys.extend(frequencies)
        counts.extend(frequencies.values())
        sizes.append(len(frequencies))
    codes, terms = pd.factorize(np.array(keys, dtype=object)) if keys else \
        (np.zeros(0, np.int64), [])
    return AnalysedBatch(docnos, list(terms), codes.astype(np.int32),
                         np.array(counts, dtype=np.uint32), np.array(sizes, dtype=np.int64))


def _with_lengths(lengths, values):
    """PISA's posting-list layout: for each term, its length then its values, in one array."""
    out = np.empty(len(lengths) + len(values), dtype=np.uint32)
    ends = np.cumsum(lengths, dtype=np.int64)
    heads = np.arange(len(lengths)) + ends - lengths
    out[heads] = lengths
    body = np.ones(len(out), dtype=bool)
    body[heads] = False
    out[body] = values
    return out


def write_index(path, batches, batch_documents=BATCH_DOCUMENTS):
    """Write a PISA index of AnalysedBatches at ``path`` (a new or empty folder); return the
    number of documents. Every document counts, one without terms too (length 0)."""
    from pyterrier_pisa import _pisathon
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    lexicon = {}  # term -> id, in order of first appearance
    totals = np.zeros(0, dtype=np.int64)  # postings per term id over all documents
    pending, pending_docs, documents = [], 0, 0
    terms_by_file = []  # per batch file written, the terms known then

    def flush():
        nonlocal totals, pending, pending_docs
        ids = np.concatenate([p[0] for p in pending])
        docids = np.concatenate([p[1] for p in pending])
        counts = np.concatenate([p[2] for p in pending])
        lengths = np.concatenate([p[3] for p in pending])
        order = np.argsort(ids, kind="stable")  # docids stay ascending within a term
        per_term = np.bincount(ids, minlength=len(lexicon)).astype(np.uint32)
        totals = np.concatenate((totals, np.zeros(len(lexicon) - len(totals), np.int64)))
        totals += per_term
        stem = path / f"inv.batch.{len(terms_by_file)}"
        Path(f"{stem}.docs").write_bytes(
            np.array([1, len(lengths)], np.uint32).tobytes()
            + _with_lengths(per_term, docids[order]).tobytes())
        Path(f"{stem}.freqs").write_bytes(_with_lengths(per_term, counts[order]).tobytes())
        Path(f"{stem}.sizes").write_bytes(
            np.concatenate(([len(lengths)], lengths)).astype(np.uint32).tobytes())
        terms_by_file.append(len(lexicon))
        pending, pending_docs = [], 0

    with (path / "fwd.documents").open("wt", encoding="utf-8") as f_docs:
        for batch in batches:
            if not batch.docnos:
                continue
            f_docs.write("".join(f"{docno}\n" for docno in batch.docnos))
            ids = np.array([lexicon.setdefault(t, len(lexicon)) for t in batch.terms],
                           dtype=np.int64)[batch.codes]
            n = len(batch.docnos)
            owner = np.repeat(np.arange(n), batch.sizes)
            lengths = np.bincount(owner, weights=batch.counts, minlength=n).astype(np.uint32)
            pending.append((ids, (owner + documents).astype(np.uint32), batch.counts, lengths))
            documents += n
            pending_docs += n
            if pending_docs >= batch_documents:
                flush()
        if pending:
            flush()
    if not documents:
        raise UserError(f"no documents to index for {path}")
    if not lexicon:
        raise UserError(f"no terms to index for {path}: every document is empty after the "
                        "analysis")
    # PISA's merge reads every term's list from every batch file: a term first seen after a
    # file was written gets an empty list there (pyterrier_pisa 0.4.9 does not add them, and
    # the merge then reads past the end of the earlier files: wrong posting lists for every
    # term that first appears after the first 100,000 documents)
    for i, known in enumerate(terms_by_file):
        empty = np.zeros(len(lexicon) - known, dtype=np.uint32).tobytes()
        for suffix in ("docs", "freqs"):
            with open(path / f"inv.batch.{i}.{suffix}", "ab") as f:
                f.write(empty)
    _pisathon.merge_inv(str(path / "inv"), len(terms_by_file), len(lexicon))
    for i in range(len(terms_by_file)):
        for suffix in ("docs", "freqs", "sizes"):
            (path / f"inv.batch.{i}.{suffix}").unlink()
    # term ids into lexicographic order, as pyterrier_pisa re-maps them
    for name in ("inv.docs", "inv.freqs"):
        (path / name).rename(path / f"{name}.tmp")
    merged_docs = np.memmap(path / "inv.docs.tmp", mode="r", dtype=np.uint32)
    merged_freqs = np.memmap(path / "inv.freqs.tmp", mode="r", dtype=np.uint32)
    starts = np.cumsum(totals + 1) - (totals + 1)
    postings = merged_docs[2:]
    with (path / "fwd.terms").open("wt", encoding="utf-8") as f_terms, \
            (path / "inv.docs").open("wb") as f_out, (path / "inv.freqs").open("wb") as f_freqs:
        f_out.write(merged_docs[:2].tobytes())
        for term in sorted(lexicon):
            f_terms.write(f"{term}\n")
            i = lexicon[term]
            start, end = starts[i], starts[i] + totals[i] + 1
            f_out.write(postings[start:end].tobytes())
            f_freqs.write(merged_freqs[start:end].tobytes())
    del merged_docs, merged_freqs, postings  # the maps close
    for name in ("inv.docs", "inv.freqs"):
        (path / f"{name}.tmp").unlink()
    _pisathon.build_binlex(str(path / "fwd.documents"), str(path / "fwd.doclex"))
    _pisathon.build_binlex(str(path / "fwd.terms"), str(path / "fwd.termlex"))
    with open(path / "pt_meta.json", "wt") as f:  # what PisaIndexer.index writes
        json.dump({"type": "sparse_index", "format": "pisa", "package_hint": "pyterrier-pisa",
                   "stemmer": "none"}, f)
    return documents
