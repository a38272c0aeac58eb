"""The mT5 re-ranker (monoT5 / unicamp-dl/mt5-base-mmarco-v2): pyterrier-t5's semantics, fast.

Semantics of pyterrier-t5's ``mT5ReRanker`` at batch size 1: the input is
``Query: {q} Document: {d}`` truncated so that ``Relevant:`` (and the end-of-sequence token) still
fits in 512 tokens; the score is log P(yes) over the ``yes``/``no`` logits of the first decoder
step. What differs is only how the work is done:
- pairs are sorted by length and batched by a token budget, so padding is small;
- bf16 on a GPU (fp32 on a CPU; ``dtype`` chooses, fp8 included: crossvariety.neural.precision);
- the forward pass is crossvariety.rerank.t5's: fused projections, the relative position bias inside
  the attention kernel, a decoder step that never computes the cross-attention's keys and
  values, only the yes/no direction of the output layer; compiled on a GPU (``compile``);
- every batch is padded and masked, so a score does not depend on its batch-mates or the batch
  size (pyterrier-t5 chops the last column of a padded batch, so its scores do);
- tokenisation runs ahead of the model, off the GIL (crossvariety.neural.tokens).
"""
import logging
import time

import numpy as np
import pyterrier as pt
import torch
from tqdm.auto import tqdm

from ..neural import compiling, precision
from . import t5
from ..neural.batching import ChunkTokenizer, default_device, padded_batches, worker_count
from ..errors import UserError
from ..models import fetch, from_pretrained, load_tokenizer, resolve_model
from ..runs import duplicate_row
from ..neural.tokens import FlatTokenizer

log = logging.getLogger(__name__)
PROMPT = "Relevant:"
MAX_LENGTH = 512  # mT5 has no n_positions; pyterrier-t5 uses 512 as well
TEMPLATE = "Query: {} Document: {}"


def prompt_ids(tokenizer):
    return tokenizer(PROMPT)["input_ids"]  # ends with </s>


def prompt_tokenizer(tokenizer, max_length=MAX_LENGTH):
    """(query, text) pairs -> tokens.Tokens of ``Query: {q} Document: {d} Relevant:</s>``, the
    text truncated so that the prompt always fits in ``max_length`` (pyterrier-t5's inputs).
    Training (finetune_mt5.py) and re-ranking share it."""
    prompt = prompt_ids(tokenizer)
    return FlatTokenizer(tokenizer, max_length - len(prompt), add_special_tokens=False,
                         suffix=prompt, template=TEMPLATE)


def yes_no_ids(tokenizer, name):
    yes, no = tokenizer.encode("yes")[0], tokenizer.encode("no")[0]
    if yes == no:
        raise UserError(f"{name}: 'yes' and 'no' share the token id {yes}")
    return yes, no


class MonoT5ReRanker(pt.Transformer):
    """Scores (query, text) pairs of a run frame (qid, query, docno, text) and ranks them.

    ``compile``: torch.compile the forward pass, with FlexAttention (auto: on a GPU, for long
    jobs: crossvariety.neural.compiling); without it, torch's SDPA. ``tokenizer_workers``: tokenizer
    processes for long jobs (auto: some on a GPU, none on a CPU). ``tok_model``: the tokenizer
    (an HF id or path; as pyterrier-t5's mT5ReRanker names it); by default the checkpoint's
    own, else its base model's (crossvariety.models.tokenizer_source), named in
    ``tokenizer_name``."""

    def __init__(self, model="mt5", text_field="text", batch_tokens=0, batch_size=None,
                 device=None, chunk=65536, verbose=True, dtype="auto", compile="auto",
                 tokenizer_workers="auto", tok_model=None):
        from transformers import AutoModelForSeq2SeqLM
        self.model_name = resolve_model(model)
        self.text_field = text_field
        self.device = default_device(device)
        self.precision = precision.resolve(dtype, self.device)
        # A token budget per batch: on a GPU large batches are what makes it fast; on a CPU
        # smaller ones keep the memory of attention low.
        self.batch_tokens = batch_tokens or (65536 if self.device.type == "cuda" else 8192)
        self.batch_size = batch_size  # an optional cap on pairs per batch, besides the budget
        self.verbose = verbose
        folder = fetch(self.model_name, "mt5")  # only what is loaded, from the hub cache
        # the paper's fine-tuned mT5 checkpoints ship no tokenizer: their base model's is used
        self.tokenizer, self.tokenizer_name = load_tokenizer(self.model_name, "mt5", tok_model)
        self.tokenization = ChunkTokenizer(prompt_tokenizer(self.tokenizer), chunk,
                                           worker_count(tokenizer_workers, self.device))
        seq2seq = from_pretrained(AutoModelForSeq2SeqLM, str(folder),
                                  dtype=precision.weights(self.precision))
        self.pad_id = self.tokenizer.pad_token_id
        yes, no = yes_no_ids(self.tokenizer, self.model_name)
        head = seq2seq.get_output_embeddings().weight.detach().float()
        direction = head[yes] - head[no]
        if seq2seq.config.tie_word_embeddings:  # T5 scales the decoder output before a tied head
            direction = direction * seq2seq.config.d_model ** -0.5
        network = t5.MonoT5Forward(seq2seq, direction, max_length=MAX_LENGTH)
        del seq2seq  # the 250k x 768 output layer among it: never used (and not to be made fp8)
        self.network = precision.prepare(network, self.precision, self.device,
                                         fp8_part=network.encoder_layers)
        self.compiler = compiling.Compiler(self.network, compile, self.device, "the mT5 forward",
                                           eager={"attention": "sdpa"},
                                           compiled={"attention": "flex"})

    def __str__(self):
        return f"MonoT5ReRanker({self.model_name}, {self.precision})"

    @torch.inference_mode()
    def score(self, queries, texts):
        """log P(yes) for each (query, text) pair, as a float32 array in input order."""
        pairs = list(zip(queries, texts))
        out = np.empty(len(pairs), dtype=np.float32)
        logits = self.compiler.for_job(len(pairs))  # logit(yes) - logit(no)
        # closed on an error too: a bar left open prints when it is collected, long after
        with tqdm(total=len(pairs), unit="pair", desc="mT5 re-rank",
                  disable=not self.verbose or not pairs
                  or not log.isEnabledFor(logging.INFO), mininterval=2) as progress:
            for offset, tokens in self.tokenization.chunks(pairs):
                scores = torch.empty(len(tokens), dtype=torch.float32, device=self.device)
                for batch in padded_batches(tokens, self.pad_id, self.batch_tokens, self.device,
                                            self.batch_size):
                    logit = logits(batch.input_ids, batch.lengths)
                    scores[batch.positions] = torch.nn.functional.logsigmoid(logit)
                    progress.update(len(batch.positions))
                out[offset:offset + len(tokens)] = scores.cpu().numpy()  # one host sync a chunk
        return out

    def transform(self, run):
        missing = {"qid", "query", "docno", self.text_field} - set(run.columns)
        if missing:
            raise ValueError(f"the re-ranker needs columns qid, query, docno, {self.text_field}; "
                             f"missing {sorted(missing)}")
        scores = self.score(run["query"], run[self.text_field])
        out = run.drop(columns=["score", "rank"], errors="ignore").assign(score=scores)
        return pt.model.add_ranks(out)


def attach_text(run, queries, dataset, top_k):
    """The top ``top_k`` of each query of a run, with the query and document text attached.

    Every qid of the run must be in ``queries`` and every docno in ``dataset``: a mismatch means
    the run, the query set or the collection is the wrong one, and is an error, not a skip. A
    document listed twice for a query is re-ranked once (at its best rank), with a warning.
    """
    run = run.astype({"qid": str, "docno": str})
    run = run.sort_values(["qid", "score"], ascending=[True, False], kind="stable")
    if duplicate_row(run) is not None:
        deduplicated = run.drop_duplicates(["qid", "docno"])
        log.warning("the run lists %d documents twice for a query (or more often); each is "
                    "re-ranked once, from its best rank", len(run) - len(deduplicated))
        run = deduplicated
    run = run.groupby("qid", sort=False).head(top_k)
    known = set(queries.qid)
    unknown = sorted(set(run.qid) - known)
    if unknown:
        raise UserError(f"{len(unknown)} qids of the run are not in the query set "
                        f"(e.g. {', '.join(unknown[:5])}): wrong --queries for this run?")
    start = time.time()
    docnos = list(dict.fromkeys(run.docno))
    texts = dataset.doc_texts(docnos)
    absent = [d for d in docnos if d not in texts]
    if absent:
        raise UserError(f"{len(absent)} docnos of the run are not in {dataset.spec} "
                        f"(e.g. {', '.join(absent[:5])}): wrong --dataset for this run?")
    log.info("attached the text of %d documents from %s in %.1fs", len(docnos), dataset.spec,
             time.time() - start)
    frame = run[["qid", "docno"]].merge(queries[["qid", "query"]], on="qid", how="left")
    frame["text"] = [texts[d] for d in frame.docno]
    return frame.reset_index(drop=True)
