"""ColBERT-XM: a multi-vector encoder over X-MOD (XLM-R with one adapter per language and layer).

Semantics are colbert-ai 0.2.22's (``Checkpoint.queryFromText`` / ``docFromText``), which loads
the published checkpoints (Stanford format: config.json with architectures HF_ColBERT, weights
``roberta.*`` + ``linear.weight``, settings in artifact.metadata):
- query: ``<s> [Q] tokens </s>`` padded with ``<mask>`` to query_maxlen (32) and, with
  attend_to_mask_tokens, attended (query augmentation); every position gives a vector.
- document: ``<s> [D] tokens </s>`` truncated to doc_maxlen (256); the vectors of punctuation
  are dropped (colbert-ai's skiplist: the first piece id of every ``string.punctuation`` symbol).
- ``[Q]`` and ``[D]`` are colbert-ai's ``[unused0]`` / ``[unused1]``, which the XLM-R vocabulary
  lacks: both are ``<unk>``, as in the original.
- vectors: ``linear`` (768 -> 128, no bias) of the last hidden states, L2-normalised.
- the adapter: ``XmodModel.set_default_language``; one language for everything encoded.
It differs in how the work is done: whole chunks sorted by length, token-budget batches, bf16
on a GPU, document vectors returned flat (fp16) with their lengths.
"""
import functools
import json
import logging
import string
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import models
from ..neural import precision
from ..neural.batching import ChunkTokenizer, default_device, no_cudnn_attention, padded_batches
from ..errors import UsageError, UserError
from ..data.languages import canonical
from ..models import resolve_model
from ..neural.tokens import from_lists

log = logging.getLogger(__name__)

# colbert-ai's defaults for settings a checkpoint's artifact.metadata may leave out
DEFAULT_SETTINGS = dict(query_token_id="[unused0]", doc_token_id="[unused1]", dim=128,
                        doc_maxlen=220, query_maxlen=32, mask_punctuation=True,
                        attend_to_mask_tokens=False, similarity="cosine", nbits=1,
                        kmeans_niters=4)
# ColBERT-XM's settings, as its checkpoints store them; a model trained from a plain X-MOD
# backbone (facebook/xmod-base) gets these
COLBERT_XM_SETTINGS = dict(DEFAULT_SETTINGS, doc_maxlen=256, attend_to_mask_tokens=True, nbits=2)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # the first present is loaded


def load_tokenizer(path, tok_model=None):
    """A checkpoint's tokenizer (``tok_model``'s if given), or XLM-R's for a bare X-MOD backbone
    that has none (crossvariety.models.BASE_TOKENIZERS)."""
    return models.load_tokenizer(path, "colbert-xm", tok_model)[0]


def checkpoint_dir(model):
    """The local folder of a checkpoint: a short name or HF id is fetched into (or found in) the
    Hugging Face cache, only the files loaded here (crossvariety.models.fetch)."""
    return models.fetch(model, "colbert-xm")


def read_settings(path, backbone=False):
    """colbert-ai's settings of a checkpoint (artifact.metadata over colbert-ai's defaults);
    ``backbone``: a plain X-MOD model to train from gets ColBERT-XM's settings."""
    metadata = Path(path) / "artifact.metadata"
    if not metadata.is_file():
        if backbone:
            return dict(COLBERT_XM_SETTINGS)
        raise UserError(f"{path} is not a ColBERT checkpoint: no artifact.metadata (a "
                        "colbert-ai/Stanford-format folder, e.g. antoinelouis/colbert-xm)")
    settings = dict(DEFAULT_SETTINGS)
    settings.update({k: v for k, v in json.loads(metadata.read_text()).items()
                     if k in DEFAULT_SETTINGS})
    if settings["similarity"] != "cosine":
        raise UserError(f"{metadata}: similarity {settings['similarity']!r}; only cosine "
                        "ColBERT models are supported")
    return settings


def adapter_language(languages, code):
    """The X-MOD adapter of a language: fr -> fr_XX, dt -> nl_XX, zh -> zh_CN; an adapter name
    (fa_IR) is taken as is."""
    if code in languages:
        return code
    lang = canonical(code)
    for adapter in languages:
        if adapter.split("_")[0] == lang:
            return adapter  # the first listed: zh_CN before zh_TW, as X-MOD orders them
    raise UsageError(f"the model has no adapter for language {code!r}; its adapters: "
                     f"{' '.join(languages)}")


def _sdpa_self_attention(self, hidden_states, attention_mask=None, *args, **kwargs):
    """X-MOD's self-attention (absolute positions, no cache) with torch's fused attention
    kernels; ``attention_mask`` is the model's additive [batch, 1, 1, length] mask."""
    batch, length, _ = hidden_states.shape

    def heads(x):
        return x.view(batch, length, self.num_attention_heads,
                      self.attention_head_size).transpose(1, 2)
    context = torch.nn.functional.scaled_dot_product_attention(
        heads(self.query(hidden_states)), heads(self.key(hidden_states)),
        heads(self.value(hidden_states)), attn_mask=attention_mask,
        dropout_p=self.dropout.p if self.training else 0.0)
    return context.transpose(1, 2).reshape(batch, length, self.all_head_size), None


def use_sdpa(encoder):
    """transformers 4.57 runs X-MOD's attention eagerly (softmax of a materialised score
    matrix); swap in torch's scaled_dot_product_attention, same arithmetic (tested against
    colbert-ai's eager model within 1e-5 in fp32)."""
    import types
    if encoder.config.position_embedding_type != "absolute" or encoder.config.is_decoder:
        return  # the fused path covers ColBERT-XM's encoder only
    for layer in encoder.encoder.layer:
        attention = layer.attention.self
        attention.forward = types.MethodType(_sdpa_self_attention, attention)


class ColBERTXM(torch.nn.Module):
    """The network: X-MOD encoder + linear projection, token vectors L2-normalised. From a
    plain X-MOD backbone (no linear.weight), the projection to ``dim`` is initialised as
    colbert-ai initialises it (normal, std = the config's initializer_range)."""

    def __init__(self, path, dtype=torch.float32, dim=128):
        super().__init__()
        import transformers
        from transformers import XmodModel
        path = Path(path)
        weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
        if weights is None:
            raise UserError(f"{path}: no model.safetensors or pytorch_model.bin")
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # linear.weight is "unused" by XmodModel
        try:
            self.encoder = XmodModel.from_pretrained(path, add_pooling_layer=False, dtype=dtype)
        finally:
            transformers.logging.set_verbosity(verbosity)
        if weights.suffix == ".safetensors":
            from safetensors import safe_open
            with safe_open(str(weights), "pt") as f:
                linear = f.get_tensor("linear.weight") if "linear.weight" in f.keys() else None
        else:
            linear = torch.load(weights, map_location="cpu", weights_only=True).get(
                "linear.weight")
        if linear is None:  # a backbone: a new projection
            linear = torch.empty(dim, self.encoder.config.hidden_size).normal_(
                std=self.encoder.config.initializer_range)
        self.linear = torch.nn.Linear(linear.shape[1], linear.shape[0], bias=False, dtype=dtype)
        with torch.no_grad():
            self.linear.weight.copy_(linear)
        use_sdpa(self.encoder)
        self.languages = list(self.encoder.config.languages)
        self.saved_language = self.encoder.config.default_language

    def set_language(self, code):
        adapter = adapter_language(self.languages, code)
        self.encoder.set_default_language(adapter)
        return adapter

    @property
    def language(self):
        return self.encoder.config.default_language

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return torch.nn.functional.normalize(self.linear(hidden).float(), p=2, dim=-1)

    def freeze_embeddings_and_adapters(self):
        """The fork's recipe: the embeddings, every layer's language adapters and adapter layer
        norm stay as they are; attention, feed-forward, shared layer norms and linear train."""
        for p in self.encoder.embeddings.parameters():
            p.requires_grad = False
        for layer in self.encoder.encoder.layer:
            if layer.output.adapter_layer_norm is not None:
                for p in layer.output.adapter_layer_norm.parameters():
                    p.requires_grad = False
            for p in layer.output.adapter_modules.parameters():
                p.requires_grad = False

    def save(self, out, tokenizer, settings):
        """A Stanford-format checkpoint (as the published ones), loadable here and by colbert-ai."""
        from safetensors.torch import save_file
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        state = {f"roberta.{k}": v.detach().float().cpu().contiguous()
                 for k, v in self.encoder.state_dict().items()}
        state["linear.weight"] = self.linear.weight.detach().float().cpu().contiguous()
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        config = self.encoder.config
        language = config.default_language
        config.default_language = self.saved_language  # what the checkpoint was saved with
        config.architectures = ["HF_ColBERT"]
        config.save_pretrained(out)
        config.default_language = language
        tokenizer.save_pretrained(out)
        (out / "artifact.metadata").write_text(json.dumps(settings, indent=2))


@functools.cache
def _shared_network(path, precision_name, device):
    """One network per checkpoint, shared by the encoders of several languages (a run over
    seven pairs needs five adapters, not five copies): each encode call sets its adapter."""
    return precision.prepare(ColBERTXM(path, dtype=precision.weights(precision_name)),
                             precision_name, device)


class ColbertTokenizer:
    """colbert-ai's query and document tokenisation, as token id lists."""

    def __init__(self, tokenizer, settings):
        self.tok = tokenizer
        self.query_maxlen = settings["query_maxlen"]
        self.doc_maxlen = settings["doc_maxlen"]
        self.attend_to_mask = settings["attend_to_mask_tokens"]
        # [unused0]/[unused1] are not in XLM-R's vocabulary: both become <unk>, as in colbert-ai
        self.q_marker = tokenizer.convert_tokens_to_ids(settings["query_token_id"])
        self.d_marker = tokenizer.convert_tokens_to_ids(settings["doc_token_id"])
        self.skiplist = {tokenizer.encode(symbol, add_special_tokens=False)[0]
                         for symbol in string.punctuation} if settings["mask_punctuation"] else set()
        self.pad_id = tokenizer.pad_token_id

    def queries(self, texts):
        """[n, query_maxlen] ids and attention mask (numpy)."""
        ids = self.tok(list(texts), truncation=True, max_length=self.query_maxlen - 1,
                       add_special_tokens=True)["input_ids"]
        n, width = len(ids), self.query_maxlen
        input_ids = np.full((n, width), self.tok.mask_token_id, dtype=np.int64)
        mask = np.ones((n, width), dtype=np.int64)
        for row, i in enumerate(ids):
            input_ids[row, 0] = i[0]
            input_ids[row, 1] = self.q_marker
            input_ids[row, 2:len(i) + 1] = i[1:]
            if not self.attend_to_mask:
                mask[row, len(i) + 1:] = 0
        return input_ids, mask

    def docs(self, texts):
        """Token id lists ``<s> [D] ... </s>`` of at most doc_maxlen ids."""
        ids = self.tok(list(texts), truncation=True, max_length=self.doc_maxlen - 1,
                       add_special_tokens=True)["input_ids"]
        return [[i[0], self.d_marker] + i[1:] for i in ids]

    def doc_tokens(self, texts):
        """``docs`` as tokens.Tokens (flat arrays), for the batching of crossvariety.neural.batching."""
        return from_lists(self.docs(texts))

    def keep(self, input_ids, attention_mask):
        """Which document positions give vectors: not padding, not punctuation."""
        skip = torch.tensor(sorted(self.skiplist), dtype=input_ids.dtype, device=input_ids.device)
        return attention_mask.bool() & ~torch.isin(input_ids, skip)


class ColBERTXMEncoder:
    """Texts -> ColBERT-XM token vectors, with the adapter of one language.

    ``language``: the collection's language (fr, nl, fa_IR, ...) for queries and documents;
    empty = the checkpoint's saved default_language. ``doc_lang_from_config``: documents with
    the saved language instead, as the original code's path did (a name-mangling bug skipped
    its language switch for documents); queries keep ``language``. ``tok_model``: the tokenizer
    (HF id or path); by default the checkpoint's own, else XLM-R's.
    """

    def __init__(self, model="colbert-xm", language=None, doc_lang_from_config=False,
                 batch_tokens=0, device=None, dtype="auto", chunk=100_000, verbose=True,
                 tok_model=None):
        self.path = checkpoint_dir(model)
        self.model_name = resolve_model(model)
        self.settings = read_settings(self.path)
        self.device = default_device(device)
        self.precision = precision.resolve(dtype, self.device)
        no_cudnn_attention(self.device)
        self.batch_tokens = batch_tokens or (131072 if self.device.type == "cuda" else 16384)
        self.chunk = chunk
        self.verbose = verbose
        self.tokenizer, self.tokenizer_name = models.load_tokenizer(self.model_name, "colbert-xm",
                                                                    tok_model)
        self.tokens = ColbertTokenizer(self.tokenizer, self.settings)
        self.model = _shared_network(self.path, self.precision, self.device)
        self.dim = self.model.linear.out_features
        self.out_dtype = torch.float32 if self.precision == "fp32" else torch.float16
        self.saved_language = self.model.saved_language
        self.language = self.model.set_language(language) if language else self.saved_language
        self.doc_language = self.saved_language if doc_lang_from_config else self.language

    def __str__(self):
        return f"ColBERTXMEncoder({self.model_name}, {self.language})"

    @torch.inference_mode()
    def encode_queries(self, texts, batch_size=1024):
        """[n, query_maxlen, dim] float32 tensor on the CPU."""
        self.model.set_language(self.language)
        input_ids, mask = self.tokens.queries(texts)
        out = []
        for b in range(0, len(input_ids), batch_size):
            ids = torch.from_numpy(input_ids[b:b + batch_size]).to(self.device)
            out.append(self.model(ids, torch.from_numpy(mask[b:b + batch_size]).to(self.device))
                       .float().cpu())
        return torch.cat(out) if out else torch.empty((0, self.tokens.query_maxlen, self.dim))

    @torch.inference_mode()
    def encode_docs(self, texts, desc="ColBERT-XM encode"):
        """(vectors [sum of lengths, dim], lengths [n] int64): documents in input order, each
        one's kept tokens in order; float32 from an fp32 model, else float16."""
        self.model.set_language(self.doc_language)
        texts = list(texts)
        lengths = np.zeros(len(texts), dtype=np.int64)
        per_doc = [None] * len(texts)
        progress = tqdm(total=len(texts), unit="doc", desc=desc, mininterval=2,
                        disable=not self.verbose or len(texts) < 1000
                        or not log.isEnabledFor(logging.INFO))
        for offset, tokens in ChunkTokenizer(self.tokens.doc_tokens, self.chunk).chunks(texts):
            # per batch, on the device: positions, kept-token counts, all vectors, keep mask
            batches = []
            for batch in padded_batches(tokens, self.tokens.pad_id, self.batch_tokens,
                                        self.device):
                vectors = self.model(batch.input_ids, batch.attention_mask).to(self.out_dtype)
                keep = self.tokens.keep(batch.input_ids, batch.attention_mask)
                batches.append((batch.positions, keep.sum(1), vectors.flatten(0, 1),
                                keep.flatten()))
                progress.update(len(batch.positions))
            # selecting the kept vectors needs their count: one host sync per chunk, not per batch
            kept = torch.cat([b[2] for b in batches])[torch.cat([b[3] for b in batches])].cpu()
            positions = torch.cat([b[0] for b in batches]).cpu().numpy() + offset
            counts = torch.cat([b[1] for b in batches]).cpu().numpy()
            for i, piece in zip(positions.tolist(), torch.split(kept, counts.tolist())):
                per_doc[i] = piece
            lengths[positions] = counts
        progress.close()
        vectors = torch.cat(per_doc) if per_doc else torch.empty((0, self.dim),
                                                                 dtype=self.out_dtype)
        return vectors, lengths


def maxsim(Q, D, D_mask):
    """ColBERT's score: for every query vector its best document vector, summed.
    Q [b, q, d], D [b, t, d] (aligned pairs), D_mask [b, t] of real, kept tokens."""
    scores = D @ Q.transpose(1, 2)  # [b, t, q]
    scores = scores.masked_fill(~D_mask.unsqueeze(-1), -9999)
    return scores.max(1).values.sum(-1)


def pair_loss(Q, D, D_mask, nway):
    """colbert-ai's training loss with in-batch negatives: cross-entropy over each query's own
    group (positive first, then its negatives), plus cross-entropy of each query over its
    positive and every passage of the other queries (its own negatives left out).
    Q [B, q, d]; D [B * nway, t, d] grouped by query; D_mask [B * nway, t]."""
    B = Q.shape[0]
    own = maxsim(Q.repeat_interleave(nway, 0), D, D_mask).view(B, nway)
    zeros = torch.zeros(B, dtype=torch.long, device=Q.device)
    group_loss = torch.nn.functional.cross_entropy(own, zeros)
    # every query against every passage: [B, B * nway]
    scores = torch.einsum("qid,ptd->qpti", Q, D)
    scores = scores.masked_fill(~D_mask[None, :, :, None], -9999).max(2).values.sum(-1)
    keep = torch.ones_like(scores, dtype=torch.bool)
    for q in range(B):
        keep[q, q * nway + 1:(q + 1) * nway] = False  # its own negatives
    in_batch = scores[keep].view(B, -1)
    labels = torch.arange(B, device=Q.device) * nway
    return group_loss + torch.nn.functional.cross_entropy(in_batch, labels)
