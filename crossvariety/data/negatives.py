"""Hard negatives for training on a variety pair, and the training examples built from them.

Two sources of candidates, each a {qid: (positive docnos, negative docnos)} map:
- ``ce_filtered``: the paper's recipe. The public MS MARCO hard-negative file (per training query,
  the negatives of BM25 and 12 dense systems) is filtered with cross-encoder scores: a negative is
  kept only if its score is at most the lowest positive's score minus a margin (3.0), up to 5 per
  system (sentence-transformers' train_bi-encoder recipe). mMARCO keeps MS MARCO's passage ids, so
  the same ids hold in every language.
- ``from_run``: mining from our own first-stage run (BM25 or BGE-M3 top-k) of the training queries,
  skipping judged positives and the top few ranks (likely unjudged positives). Works offline
  and for any pair.
Examples are then sampled: one positive and N negatives per query, in seeded rounds.

The query script of a training file ("Lost in Transliteration", SIGIR 2025): native, romanised
(translit) or mixed, half of the queries romanised, drawn by ``mixed_half``.
"""
import gc
import gzip
import hashlib
import json
import logging
import pickle
import random
import struct
import sys
import zlib
from pathlib import Path

from ..errors import UserError
from .textfiles import gzip_problem, read_lines

log = logging.getLogger(__name__)

HARD_NEGATIVES_URL = ("https://huggingface.co/datasets/sentence-transformers/msmarco-hard-negatives"
                      "/resolve/main/msmarco-hard-negatives.jsonl.gz")
CE_SCORES_URL = ("https://huggingface.co/datasets/sentence-transformers/msmarco-hard-negatives"
                 "/resolve/main/cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz")


class _Refused(Exception):
    pass


class _FloatDType:
    """What a score pickle's ``numpy.dtype('f4' or 'f8')`` is rebuilt as: the unpacking of its
    bytes, nothing else (no numpy code runs while the file is read)."""

    def __init__(self, name, align=False, copy=True):
        if name not in ("f4", "f8"):
            raise _Refused(f"numpy.dtype({name!r})")
        self.code = "f" if name == "f4" else "d"
        self.unpack = struct.Struct("<" + self.code).unpack

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) >= 5 and state[1] in ("<", ">", "=", "|")
                and state[2:5] == (None, None, None)):
            raise _Refused("numpy.dtype state of a structured or sub-array dtype")
        order = {"<": "<", ">": ">"}.get(state[1], "<" if sys.byteorder == "little" else ">")
        self.unpack = struct.Struct(order + self.code).unpack


def _float_scalar(dtype, data):
    """numpy's scalar(dtype, bytes) for a float32/float64 score, as a Python float (exact).
    Only a _FloatDType has an ``unpack`` (nothing else a score pickle can build does); one of
    the wrong length is an error."""
    try:
        return dtype.unpack(data)[0]
    except (AttributeError, TypeError, struct.error):
        raise _Refused("a numpy scalar other than float32/float64") from None


def _latin1(text, encoding):
    """_codecs.encode as protocol-2 pickles store bytes (a numpy scalar's): latin1 only."""
    if not (encoding == "latin1" and isinstance(text, str)):
        raise _Refused(f"_codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


# What a score pickle may name: dicts, ints and floats need nothing, and the numpy float32 (or
# float64) scalars that CrossEncoder.predict returns are rebuilt by these stand-ins (a pickle
# made with numpy 1.x names numpy.core, one made with 2.x numpy._core). Any other name is
# refused before it is looked up, so nothing from the file runs.
_CE_GLOBALS = {("numpy.core.multiarray", "scalar"): _float_scalar,
               ("numpy._core.multiarray", "scalar"): _float_scalar,
               ("numpy", "dtype"): _FloatDType,
               ("_codecs", "encode"): _latin1}


class _ScoresUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _CE_GLOBALS:
            raise _Refused(f"{module}.{name}")
        return _CE_GLOBALS[module, name]


def read_ce_scores(path):
    """{qid: {docno: cross-encoder score}} from the sentence-transformers pickle
    (``scores[qid][pid] -> score``, int ids). Read with an unpickler that builds only dicts,
    numbers and numpy float scalars: a pickle naming anything else (a function that would run)
    is refused."""
    collecting = gc.isenabled()
    gc.disable()  # 160M scores in dicts, no cycles: the collector's passes would double the time
    try:
        return _read_ce_scores(path)
    finally:
        if collecting:
            gc.enable()


def _read_ce_scores(path):
    try:
        with gzip.open(path, "rb") as f:
            scores = _ScoresUnpickler(f).load()
    except _Refused as e:
        raise UserError(f"{path}: refused to load {e} from this pickle: a cross-encoder score "
                        "file holds only dicts of ids and scores, so this one is not it or was "
                        "tampered with; delete it to fetch the real one again") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise UserError(f"{gzip_problem(path, e)[0]}; delete it and rerun to download it "
                        "again") from None
    except (OSError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise UserError(f"{path}: not a readable cross-encoder score pickle ({type(e).__name__}: "
                        f"{str(e)[:120]}); delete it to fetch it again") from None
    try:  # Python floats (exact for float32): the float64 arithmetic of numpy 1.x's recipe
        return {str(q): {str(d): float(s) for d, s in docs.items()} for q, docs in scores.items()}
    except (AttributeError, TypeError, ValueError):
        raise UserError(f"{path}: not a {{qid: {{pid: score}}}} table of cross-encoder scores; "
                        "delete it to fetch it again") from None


def ce_filtered(hard_negatives_path, ce_scores, qids, margin=3.0, per_system=5, systems=None):
    """The paper's negatives for the training queries ``qids``: per system, up to ``per_system``
    negatives whose cross-encoder score is <= min(positive scores) - ``margin``."""
    qids = set(qids)
    candidates = {}
    for lineno, line in read_lines(hard_negatives_path):
        try:
            data = json.loads(line)
            qid, pos, neg = str(data["qid"]), data["pos"], data["neg"]
            if not isinstance(pos, list) or not isinstance(neg, dict):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{hard_negatives_path}:{lineno}: not a line of msmarco-hard-negatives"
                            '.jsonl.gz ({"qid": ..., "pos": [...], "neg": {system: [...]}}); '
                            "delete the file and rerun to download it again") from None
        if qid not in qids or not pos:
            continue
        scores = ce_scores.get(qid)
        positives = [str(p) for p in pos]
        if scores is None or any(p not in scores for p in positives):
            raise UserError(f"{hard_negatives_path}:{lineno}: no cross-encoder score for "
                            f"query {qid} or one of its positives; wrong score file?")
        threshold = min(scores[p] for p in positives) - margin
        negatives = []
        for system in (systems or neg.keys()):
            added = 0
            for docno in map(str, neg.get(system, [])):
                if docno in scores and scores[docno] <= threshold and docno not in negatives \
                        and docno not in positives:
                    negatives.append(docno)
                    added += 1
                    if added >= per_system:
                        break
        if negatives:
            candidates[qid] = (positives, negatives)
    return candidates


def from_run(run, qrels, depth=200, skip_top=3):
    """Negatives from a first-stage run: ranks skip_top..depth-1, never a judged positive."""
    positives = {}
    for qid, docno, label in qrels[["qid", "docno", "label"]].itertuples(index=False):
        if label > 0:
            positives.setdefault(str(qid), []).append(str(docno))
    candidates = {}
    ranked = run.sort_values(["qid", "score"], ascending=[True, False], kind="stable")
    for qid, group in ranked.groupby("qid", sort=False):
        qid = str(qid)
        if qid not in positives:
            continue
        judged = set(positives[qid])
        negatives = [d for d in list(group.docno.astype(str))[skip_top:depth] if d not in judged]
        if negatives:
            candidates[qid] = (positives[qid], negatives)
    return candidates


def sample_examples(candidates, query_text, doc_text, num_negatives=1, rounds=1, seed=0):
    """Training examples {"query", "pos": [text], "neg": [texts]}: per round and query, one
    positive and ``num_negatives`` negatives drawn without replacement (all, if fewer). Round r
    draws with the seed ``seed + r``, as the paper's rounds did (seeds 42, 43, ...): a file of
    more rounds starts with the file of fewer."""
    examples = []
    for round_index in range(rounds):
        rng = random.Random(seed + round_index)
        for qid in sorted(candidates):
            positives, negatives = candidates[qid]
            pos = rng.choice(positives)
            neg = rng.sample(negatives, min(num_negatives, len(negatives)))
            examples.append({"query": query_text[qid], "pos": [doc_text[pos]],
                             "neg": [doc_text[d] for d in neg]})
    return examples


QUERY_SCRIPTS = ["native", "translit", "mixed"]


def mixed_half(qids, seed):
    """The qids whose query is romanised in a mixed training file (the paper's 50_MIXED; how
    the authors drew their half is not in their code, so this rule is ours): each qid is
    ranked by the SHA-256 of ``f"{seed}\\0{qid}"`` (ties, which do not happen, by qid) and the
    first floor(n/2) of the n distinct qids are romanised, the other ceil(n/2) stay native.
    So exactly half (n odd: one fewer romanised), whatever the order of the file, the same set
    for the same qids and seed, and another seed draws another half. A qid's lot does not
    depend on the round: every example of a query has the same script."""
    qids = sorted({str(q) for q in qids})
    ranked = sorted(qids, key=lambda q: (hashlib.sha256(f"{seed}\0{q}".encode()).digest(), q))
    return set(ranked[:len(ranked) // 2])


EXAMPLE = '{"query": str, "pos": [str, ...], "neg": [str, ...]}'


def read_examples(path):
    """Training examples from a JSONL file (gzipped or not), checked line by line: a query
    (a string), ``pos`` (a non-empty list of strings) and ``neg`` (a list of strings). A string
    where a list belongs would otherwise be trained on as a list of single characters."""
    if not Path(path).is_file():
        raise UserError(f"training file {path} not found; mine_negatives.py makes it")
    examples = []
    for lineno, line in read_lines(path):
        try:
            example = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: not JSON ({e.msg}); a training example is "
                            f"{EXAMPLE}") from None
        problem = _example_problem(example)
        if problem:
            raise UserError(f"{path}:{lineno}: {problem}; a training example is {EXAMPLE}")
        examples.append(example)
    if not examples:
        raise UserError(f"{path}: no training examples")
    return examples


def _example_problem(example):
    if not isinstance(example, dict):
        return f"a JSON {type(example).__name__}, not an object"
    missing = [key for key in ("query", "pos", "neg") if key not in example]
    if missing:
        return f"no {', '.join(missing)}"
    if not isinstance(example["query"], str):
        return f'"query" is {json.dumps(example["query"])[:40]}, not a string'
    for key in ("pos", "neg"):
        value = example[key]
        if not isinstance(value, list):
            return f'"{key}" is {json.dumps(value, ensure_ascii=False)[:40]}, not a list of strings'
        bad = [item for item in value if not isinstance(item, str)]
        if bad:
            return f'"{key}" holds {json.dumps(bad[0])[:40]}, not a string'
    if not example["pos"]:
        return '"pos" is empty: an example needs a positive passage'
    return None
