"""The mT5 re-ranker under pyterrier-t5's name and arguments.

``mT5ReRanker(tok_model, model, batch_size, text_field, verbose)`` is pyterrier-t5's signature,
in its order; the scores are pyterrier-t5's at batch size 1 (log P(yes) of ``Query: {q}
Document: {d} Relevant:``), computed by crossvariety.rerank.monot5.MonoT5ReRanker: length-sorted
token-budget batches whose scores do not depend on their batch-mates, bf16 on a GPU by default
(``dtype="fp32"`` for the paper's precision).
"""
from ..rerank.monot5 import MonoT5ReRanker


class mT5ReRanker(MonoT5ReRanker):  # noqa: N801 (pyterrier-t5's name)
    """(qid, query, docno, text) -> score, rank.

    ``model``: an HF id, a local folder, or a short name (mt5, mt5-lt-cafr, mt5-lt-afdt:
    crossvariety.models.MODELS). ``tok_model``: the tokenizer; by default the checkpoint's own,
    else its base model's (the paper's fine-tuned checkpoints ship none: unicamp-dl's is
    used, as pyterrier-t5's default is). ``batch_size``: at most this many pairs per forward
    pass (default: none, batches are bounded by ``batch_tokens`` tokens, which is faster).
    ``dtype``: auto (bf16 on a GPU, fp32 on a CPU), bf16, fp32, fp8."""

    def __init__(self, tok_model=None, model="unicamp-dl/mt5-base-mmarco-v2", batch_size=None,
                 text_field="text", verbose=True, *, device=None, dtype="auto", batch_tokens=0,
                 compile="auto"):
        super().__init__(model, text_field=text_field, batch_tokens=batch_tokens,
                         batch_size=batch_size, device=device, verbose=verbose, dtype=dtype,
                         compile=compile, tok_model=tok_model)

    def __repr__(self):
        return f"mT5ReRanker(model={self.model_name!r})"
