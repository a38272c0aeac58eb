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
"""
import gzip
import json
import logging
import pickle
import random
import zlib
from pathlib import Path

from .errors import UserError
from .textfiles import gzip_problem, read_lines

log = logging.getLogger(__name__)

HARD_NEGATIVES_URL = ("https://huggingface.co/datasets/sentence-transformers/msmarco-hard-negatives"
                      "/resolve/main/msmarco-hard-negatives.jsonl.gz")
CE_SCORES_URL = ("https://huggingface.co/datasets/sentence-transformers/msmarco-hard-negatives"
                 "/resolve/main/cross-encoder-ms-marco-MiniLM-L-6-v2-scores.pkl.gz")


def read_ce_scores(path):
    """{qid: {docno: cross-encoder score}} from the sentence-transformers pickle (int ids)."""
    try:
        with gzip.open(path, "rb") as f:
            scores = pickle.load(f)
    except (EOFError, zlib.error, gzip.BadGzipFile, pickle.UnpicklingError) as e:
        problem = gzip_problem(path, e)[0] if not isinstance(e, pickle.UnpicklingError) else \
            f"{path}: not the cross-encoder score pickle ({e})"
        raise UserError(f"{problem}; delete it and rerun to download it again") from None
    return {str(q): {str(d): s for d, s in docs.items()} for q, docs in scores.items()}


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
