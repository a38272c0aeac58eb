"""Random-weight models built offline, for tests (tiny) and GPU benchmarks (real architectures).

Throughput does not depend on the weights, and tests need only a model that loads through the
real loading code. The tokenizers are sentencepiece models trained on the given texts in a
fraction of a second.
"""
import tempfile
from pathlib import Path

import torch

# mT5-base as published (unicamp-dl/mt5-base-mmarco-v2 is fine-tuned from it).
MT5_BASE = dict(vocab_size=250112, d_model=768, d_kv=64, d_ff=2048, num_layers=12,
                num_decoder_layers=12, num_heads=12, feed_forward_proj="gated-gelu",
                tie_word_embeddings=False)
MT5_TINY = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=1, num_heads=4,
                feed_forward_proj="gated-gelu", relative_attention_num_buckets=8,
                # tied, otherwise every score saturates at random weights
                tie_word_embeddings=True)


def _sentencepiece(texts, prefix, vocab_size, symbols=()):
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(prefix), vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
        user_defined_symbols=list(symbols), minloglevel=2)
    return Path(f"{prefix}.model")


def build_mt5(path, texts, size="tiny", vocab_size=2000, seed=0):
    """An mT5 re-ranker at random weights at ``path``, loadable with from_pretrained, whose
    tokenizer gives ``yes`` and ``no`` their own ids (as the real one does)."""
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Tokenizer
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_file = _sentencepiece(texts, Path(tmp) / "sp", vocab_size,
                                    symbols=("\u2581yes", "\u2581no"))
        T5Tokenizer(vocab_file=str(model_file), extra_ids=0, legacy=False).save_pretrained(path)
    tokenizer = T5Tokenizer.from_pretrained(path)
    shape = dict(MT5_BASE) if size == "base" else dict(MT5_TINY, vocab_size=len(tokenizer))
    config = MT5Config(decoder_start_token_id=tokenizer.pad_token_id,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                       **shape)
    torch.manual_seed(seed)
    MT5ForConditionalGeneration(config).save_pretrained(path)
    return path


def build_lexical_mt5(path, texts, vocab_size=1500, seed=0):
    """An mT5 re-ranker whose weights are set by hand so that its score is lexical: log P(yes)
    rises with the share of the query's tokens that occur in the document (each query token
    weighted by a small random amount, so that scores rarely tie). Passages that share the
    query's words rank first, as a trained re-ranker would rank them, through the real T5
    arithmetic (mT5's gated feed-forward, relative position bias, RMS norms, one decoder step).

    How: embeddings hold a random unit vector per token (dims U), a tie-breaking weight (W), a
    constant (C), and marks of ``</s>`` (S) and of the prompt's ``\u2581Document`` piece (G).
    Encoder layer 1, head 0, sees only keys on its left (its relative position bias) and attends
    to ``Document`` when it is there: it writes F = 1 on the document's side, 0 on the query's.
    Layer 2, head 1: a token attends to its twins on the other side (same U vector, a bonus for
    F differing) and otherwise to ``</s>`` (the sink); its share on the sink goes to S: ~1
    when the token has no twin in the document, ~0 when it has. The decoder's one step attends
    to the query's side (F = 0) and reads the mean of S against C; the yes-no direction is -S.
    Everything else is zero (the feed-forwards add nothing)."""
    import math
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Tokenizer
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_file = _sentencepiece(texts, Path(tmp) / "sp", vocab_size,
                                    symbols=("\u2581yes", "\u2581no", "\u2581Document"))
        T5Tokenizer(vocab_file=str(model_file), extra_ids=0, legacy=False).save_pretrained(path)
    tokenizer = T5Tokenizer.from_pretrained(path)
    d, buckets = 64, 8
    u, w, s, c, f, g = slice(0, d - 5), d - 5, d - 4, d - 3, d - 2, d - 1
    config = MT5Config(vocab_size=len(tokenizer), d_model=d, d_kv=d, d_ff=8, num_layers=2,
                       num_decoder_layers=1, num_heads=2, feed_forward_proj="gated-gelu",
                       relative_attention_num_buckets=buckets, tie_word_embeddings=False,
                       decoder_start_token_id=tokenizer.pad_token_id,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = MT5ForConditionalGeneration(config)
    # RMS of a token's embedding (unit U, C = 1) before "Document" and, with F = 1, after it
    before, after = math.sqrt(2 / d), math.sqrt(3 / d)
    twin, sink, bonus = 32.0, 20.0, 3.0  # attention scores: a twin's, the sink's, above bonus
    eos, document = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("\u2581Document")
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(1.0) if "layer_norm" in name else p.zero_()
        embed = model.shared.weight
        embed[:, u] = torch.nn.functional.normalize(torch.randn(len(tokenizer), d - 5), dim=-1)
        embed[:, w] = 0.3 * torch.rand(len(tokenizer))
        embed[:, c] = 1.0
        for special, mark in ((tokenizer.pad_token_id, None), (eos, s), (document, g)):
            embed[special] = 0.0
            embed[special, c] = 1.0  # the pad is the decoder's start: C alone
            if mark is not None:
                embed[special, mark] = 1.0
        first, second = (block.layer[0].SelfAttention for block in model.encoder.block)
        first.relative_attention_bias.weight[buckets // 2:, 0] = -1e4  # keys on the right
        first.q.weight[0, c], first.k.weight[0, g], first.v.weight[0, g] = 1.0, 1.0, 1.0
        first.o.weight[f, 0] = before
        h = d  # head 1
        scale = math.sqrt(twin * before * after)
        second.q.weight[h:h + d - 5, u] = scale * torch.eye(d - 5)
        second.k.weight[h:h + d - 5, u] = scale * torch.eye(d - 5)
        second.q.weight[h + d - 4, c], second.k.weight[h + d - 4, f] = bonus, 1.0  # + F_j
        second.q.weight[h + d - 3, f], second.k.weight[h + d - 3, f] = -2 * bonus, 1.0  # F_i F_j
        second.q.weight[h + d - 2, c], second.k.weight[h + d - 2, s] = 1.0, sink * before * after
        second.v.weight[h, s] = 1.0
        second.o.weight[s, h] = after
        cross = model.decoder.block[0].layer[1].EncDecAttention
        cross.q.weight[0, c], cross.k.weight[0, f] = -10.0, 1.0  # the query's side only
        cross.q.weight[1, c], cross.k.weight[1, w] = 1.0, 0.1  # each token's small weight
        cross.v.weight[0, s], cross.o.weight[s, 0] = 1.0, 1.0
        cross.v.weight[1, c], cross.o.weight[c, 1] = 1.0, 1.0
        model.lm_head.weight[tokenizer.encode("yes")[0], s] = -1.0
    model.save_pretrained(path)
    return path


# BGE-M3's encoder: XLM-RoBERTa large with 8k positions.
XLMR_LARGE = dict(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096, max_position_embeddings=8194, type_vocab_size=1,
                  layer_norm_eps=1e-5)
XLMR_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=1100, type_vocab_size=1, layer_norm_eps=1e-5,
                 # wide weights, otherwise every [CLS] vector is nearly the same
                 initializer_range=0.5)


def _xlmr_tokenizer(path, texts, vocab_size, model_max_length):
    """An XLM-R-style tokenizer (sentencepiece, fairseq ids) trained on ``texts``, saved at
    ``path``."""
    import json
    import shutil
    from transformers import AutoTokenizer
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_file = _sentencepiece(texts, Path(tmp) / "sp", vocab_size)
        shutil.copy(model_file, path / "sentencepiece.bpe.model")
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": model_max_length}))
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.save_pretrained(path)
    return tokenizer


def build_xlmr(path, texts, size="tiny", vocab_size=2000, seed=0):
    """A BGE-M3-like encoder (XLM-R) at random weights at ``path``, with its tokenizer."""
    from transformers import XLMRobertaConfig, XLMRobertaModel
    path = Path(path)
    tokenizer = _xlmr_tokenizer(path, texts, vocab_size, model_max_length=8192)
    shape = dict(XLMR_LARGE) if size == "large" else dict(XLMR_TINY, vocab_size=len(tokenizer))
    config = XLMRobertaConfig(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, **shape)
    torch.manual_seed(seed)
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(path)
    return path


def build_lexical_xlmr(path, texts, vocab_size=1500, seed=0, hidden_size=128):
    """A BGE-M3-like encoder whose [CLS] vector is a bag of words: each layer's attention is
    uniform (zero queries and keys) and its output, scaled up, swamps the residual, so every
    state becomes the layer-normed mean of the tokens' random embeddings (special tokens: zero;
    positions: zero); the feed-forwards add nothing. Cosine similarity then counts shared
    tokens, and passages that share the query's words rank first, through the real XLM-R
    arithmetic."""
    from transformers import XLMRobertaConfig, XLMRobertaModel
    path = Path(path)
    tokenizer = _xlmr_tokenizer(path, texts, vocab_size, model_max_length=8192)
    config = XLMRobertaConfig(pad_token_id=tokenizer.pad_token_id,
                              bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id,
                              **dict(XLMR_TINY, vocab_size=len(tokenizer), hidden_size=hidden_size))
    torch.manual_seed(seed)
    model = XLMRobertaModel(config, add_pooling_layer=False)
    identity = torch.eye(hidden_size)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(1.0) if name.endswith("LayerNorm.weight") else p.zero_()
        words = model.embeddings.word_embeddings.weight
        words.normal_()
        words[tokenizer.all_special_ids] = 0.0
        for layer in model.encoder.layer:
            layer.attention.self.value.weight.copy_(identity)
            layer.attention.output.dense.weight.copy_(100 * identity)
    model.save_pretrained(path)
    return path


def synthetic_passages(n, seed=0):
    """Passages of mMARCO-like length (median ~45 words, long tail) over a Zipfian vocabulary of
    made-up words: a workload for benchmarks that needs no data."""
    import numpy as np
    rng = np.random.default_rng(seed)
    syllables = [c + v for c in "bcdfglmnprstvz" for v in "aeiou"] + ["qu", "ch", "ou", "ai"]
    words = sorted({"".join(rng.choice(syllables, size=rng.integers(1, 5)))
                    for _ in range(30000)})[:20000]
    rng.shuffle(words)
    weights = 1.0 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    lengths = np.clip(rng.lognormal(np.log(45), 0.45, size=n), 4, 300).astype(int)
    # rng.choice(len(words), size=k, p=weights) draws exactly this (the same passages for a
    # seed), but rebuilds the 20,000-word distribution for every passage: minutes for 40k
    words = np.asarray(words)
    cdf = weights.cumsum()
    cdf /= cdf[-1]
    return [" ".join(words[cdf.searchsorted(rng.random(k), side="right")]) for k in lengths]



# ColBERT-XM's encoder: X-MOD base (XLM-R base with a bottleneck adapter per language and layer).
XMOD_LANGUAGES = ("en_XX", "fr_XX", "nl_XX", "it_IT", "zh_CN", "id_ID", "fa_IR", "ru_RU")
XMOD_BASE = dict(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
                 layer_norm_eps=1e-5, adapter_reduction_factor=2)
XMOD_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                 adapter_reduction_factor=2, initializer_range=0.2)

def build_colbert_xm(path, texts, size="tiny", vocab_size=2000, seed=0, dim=None,
                     default_language="en_XX", languages=XMOD_LANGUAGES, lexical=False):
    """A ColBERT-XM checkpoint at random weights in the Stanford format of the published ones
    (config.json with architectures HF_ColBERT, weights roberta.* + linear.weight,
    artifact.metadata), loadable by colbert-ai and by crossvariety.families.colbert.

    ``lexical``: the layers' output projections and the position embeddings are scaled down,
    so that a token's vector is mostly its own embedding: MaxSim then behaves like token
    matching, and rankings have clear winners (a random model's scores are near-ties)."""
    import json
    from safetensors.torch import save_file
    from transformers import XmodConfig, XmodModel
    path = Path(path)
    tokenizer = _xlmr_tokenizer(path, texts, vocab_size, model_max_length=512)
    shape = dict(XMOD_BASE) if size == "base" else dict(XMOD_TINY, vocab_size=len(tokenizer))
    config = XmodConfig(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, languages=list(languages),
                        default_language=default_language, **shape)
    from ..families.colbert import COLBERT_XM_SETTINGS
    metadata = dict(COLBERT_XM_SETTINGS, dim=dim or COLBERT_XM_SETTINGS["dim"])
    torch.manual_seed(seed)
    encoder = XmodModel(config, add_pooling_layer=False)
    if lexical:
        with torch.no_grad():
            encoder.embeddings.token_type_embeddings.weight.zero_()  # shared by every token
            # query augmentation's <mask> vectors then match every document's </s> alike
            words = encoder.embeddings.word_embeddings.weight
            words[tokenizer.mask_token_id] = words[tokenizer.eos_token_id]
            encoder.embeddings.position_embeddings.weight.mul_(0.05)
            for layer in encoder.encoder.layer:
                layer.attention.output.dense.weight.mul_(0.05)
                layer.output.dense.weight.mul_(0.05)
                for adapter in layer.output.adapter_modules.values():
                    adapter.dense2.weight.mul_(0.05)
    linear = torch.nn.Linear(config.hidden_size, metadata["dim"], bias=False)
    state = {f"roberta.{k}": v.contiguous() for k, v in encoder.state_dict().items()}
    state["linear.weight"] = linear.weight.detach().contiguous()
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    config.architectures = ["HF_ColBERT"]
    config.save_pretrained(path)
    (path / "artifact.metadata").write_text(json.dumps(metadata, indent=2))
    return path


# ----------------------------------------------------------------------------- published layouts
# The files of the paper's released checkpoints and of the models they start from, as the
# repositories' Hugging Face "Files and versions" pages list them (README.md and .gitattributes
# aside). crossvariety.models loads from these layouts; the tests serve tiny models in them
# from a fake hub cache.
PUBLISHED_LAYOUTS = {
    # andreaschari/mt5-unicamp-lt-{cafr,afdt}: no tokenizer at all
    "mt5-lt": ("config.json", "generation_config.json", "model.safetensors"),
    # unicamp-dl/mt5-base-mmarco-v2 (main): pickled weights, a slow tokenizer (no tokenizer.json)
    "mt5-base-mmarco": ("config.json", "pytorch_model.bin", "special_tokens_map.json",
                        "spiece.model", "tokenizer_config.json"),
    # andreaschari/bge-m3-lt-cafr: a sentence-transformers folder with copies of two files
    "bge-m3-lt-cafr": ("1_Pooling/config.json", "config.json", "config_sentence_transformers.json",
                       "model copy.safetensors", "model.safetensors", "modules.json",
                       "sentence_bert_config.json", "sentencepiece.bpe copy.model",
                       "sentencepiece.bpe.model", "special_tokens_map.json", "tokenizer.json",
                       "tokenizer_config.json"),
    # andreaschari/bge-m3-lt-afdt: the same without the copies, with FlagEmbedding's pickle
    "bge-m3-lt-afdt": ("1_Pooling/config.json", "config.json", "config_sentence_transformers.json",
                       "model.safetensors", "modules.json", "sentence_bert_config.json",
                       "sentencepiece.bpe.model", "special_tokens_map.json", "tokenizer.json",
                       "tokenizer_config.json", "training_args.bin"),
    # BAAI/bge-m3: pickled weights, the sparse and ColBERT heads, ONNX weights
    "bge-m3": ("1_Pooling/config.json", "colbert_linear.pt", "config.json",
               "config_sentence_transformers.json", "modules.json", "onnx/model.onnx",
               "onnx/model.onnx_data", "pytorch_model.bin", "sentence_bert_config.json",
               "sentencepiece.bpe.model", "sparse_linear.pt", "special_tokens_map.json",
               "tokenizer.json", "tokenizer_config.json"),
    # antoinelouis/colbert-xm: colbert-ai's (Stanford) layout
    "colbert-xm": ("artifact.metadata", "config.json", "model.safetensors",
                   "sentencepiece.bpe.model", "special_tokens_map.json", "tokenizer.json",
                   "tokenizer_config.json"),
    # andreaschari/colbert-xm-lt-{cafr,afdt}: the same without the sentencepiece model
    "colbert-xm-lt": ("artifact.metadata", "config.json", "model.safetensors",
                      "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"),
}
NEVER_READ = b"not read by crossvariety: a copy, a pickle or another format\n"


def _sentence_transformers_file(name, hidden_size):
    import json
    content = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"}],
        "1_Pooling/config.json": {"word_embedding_dimension": hidden_size,
                                  "pooling_mode_cls_token": True,
                                  "pooling_mode_mean_tokens": False},
        "config_sentence_transformers.json": {"__version__": {"sentence_transformers": "2.2.2"}},
        "sentence_bert_config.json": {"max_seq_length": 8192, "do_lower_case": False},
    }[name]
    return json.dumps(content, indent=2).encode()


def published_files(plain, layout):
    """{name: bytes}: the model saved at ``plain`` (a folder as save_pretrained writes it, with
    its tokenizer) in one of PUBLISHED_LAYOUTS, for a fake hub cache. Pickled weights and heads
    are real (torch.save); the copies, training_args.bin and the ONNX files hold bytes that no
    loader can read, so that loading them would fail."""
    import io
    import json
    from safetensors.torch import load_file
    plain = Path(plain)
    hidden_size = json.loads((plain / "config.json").read_text()).get("hidden_size", 0)

    def saved(obj):
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    def linear(out_features, seed):
        torch.manual_seed(seed)
        return saved(torch.nn.Linear(hidden_size, out_features).state_dict())

    made = {
        "pytorch_model.bin": lambda: saved(load_file(str(plain / "model.safetensors"))),
        "colbert_linear.pt": lambda: linear(hidden_size, 1),
        "sparse_linear.pt": lambda: linear(1, 2),
    }
    files = {}
    for name in PUBLISHED_LAYOUTS[layout]:
        if (plain / name).is_file():
            files[name] = (plain / name).read_bytes()
        elif name in made:
            files[name] = made[name]()
        elif name in ("modules.json", "1_Pooling/config.json", "config_sentence_transformers.json",
                      "sentence_bert_config.json"):
            files[name] = _sentence_transformers_file(name, hidden_size)
        elif " copy." in name or name in ("training_args.bin", "onnx/model.onnx",
                                          "onnx/model.onnx_data"):
            files[name] = NEVER_READ
        else:
            raise FileNotFoundError(f"{plain} has no {name} for the {layout} layout")
    files["README.md"] = f"A tiny random model in the {layout} layout.\n".encode()
    return files
