"""The model registry (the paper's short model names -> Hugging Face ids; local paths work too)
and the loading of checkpoints as they are published.

A model given by its Hugging Face id is fetched into the hub cache with only the files the code
loads: the config, one copy of the weights (model.safetensors, else pytorch_model.bin), the
tokenizer files, and the family's own (generation_config.json for mT5, artifact.metadata for
ColBERT-XM). Nothing else: the paper's andreaschari/bge-m3-lt-cafr also holds a second 2.27 GB
"model copy.safetensors" and andreaschari/bge-m3-lt-afdt a pickled training_args.bin, and
BAAI/bge-m3 holds ONNX weights and sparse/ColBERT heads that dense retrieval never reads. The
log says what is fetched and how large. Offline (``HF_HUB_OFFLINE=1`` or no network) the cached
snapshot is used.

Tokenizers: a checkpoint's own when it ships one, else its base model's (BASE_TOKENIZERS): the
paper's fine-tuned mT5 re-rankers (andreaschari/mt5-unicamp-lt-*) hold only config.json,
generation_config.json and model.safetensors, and take the tokenizer of the model they were
fine-tuned from, unicamp-dl/mt5-base-mmarco-v2 (mT5's vocabulary: its config.json says
model_type mt5, vocab_size 250112, tokenizer_class T5Tokenizer, as google/mt5-base's does, and its
spiece.model is mT5's 4.31 MB one). ``tok_model`` (``--tokenizer`` in the scripts, named as
pyterrier-t5's mT5ReRanker names it) overrides the choice.
"""
import functools
import json
import logging
import os
import time
from fnmatch import fnmatch
from pathlib import Path

from .errors import UsageError, UserError

log = logging.getLogger(__name__)

MODELS = {
    "bge-m3": "BAAI/bge-m3",
    "bge-m3-lt-cafr": "andreaschari/bge-m3-lt-cafr",
    "bge-m3-lt-afdt": "andreaschari/bge-m3-lt-afdt",
    "mt5": "unicamp-dl/mt5-base-mmarco-v2",
    "mt5-lt-cafr": "andreaschari/mt5-unicamp-lt-cafr",
    "mt5-lt-afdt": "andreaschari/mt5-unicamp-lt-afdt",
    "colbert-xm": "antoinelouis/colbert-xm",
    "colbert-xm-lt-cafr": "andreaschari/colbert-xm-lt-cafr",
    "colbert-xm-lt-afdt": "andreaschari/colbert-xm-lt-afdt",
    "xmod-base": "facebook/xmod-base",  # the backbone finetune_colbertxm.py starts from
    # "Lost in Transliteration" (SIGIR 2025, docs/transliteration.md): BGE-M3 and the mT5
    # re-ranker fine-tuned on mMARCO Chinese or Russian training queries, native, romanised
    # (translit) or half and half (mixed = the authors' 50_MIXED); Chinese also with the queries
    # cut by Anserini's CJK analyzer first (-anserini). Ids as the authors' models.py (e939c31)
    # names them, not checked here (no hub); their mT5 ones are saved without a tokenizer (their
    # train_t5.py), so the base model's is used, as for mt5-lt-*. Their models.py maps the
    # Russian native mT5 to ".../mt5-RU_MMARCO_TRANSLIT" (a slip): the id below follows the
    # pattern of the others.
    "bge-m3-zh-native": "andreaschari/bge-m3-ZH_MMARCO_NATIVE",
    "bge-m3-zh-native-anserini": "andreaschari/bge-m3-ZH_MMARCO_NATIVE_ANSERINI",
    "bge-m3-zh-translit": "andreaschari/bge-m3-ZH_MMARCO_TRANSLIT",
    "bge-m3-zh-translit-anserini": "andreaschari/bge-m3-ZH_MMARCO_TRANSLIT_ANSERINI",
    "bge-m3-zh-mixed": "andreaschari/bge-m3-ZH_MMARCO_50_MIXED",
    "bge-m3-zh-mixed-anserini": "andreaschari/bge-m3-ZH_MMARCO_50_MIXED_ANSERINI",
    "bge-m3-ru-native": "andreaschari/bge-m3-RU_MMARCO_NATIVE",
    "bge-m3-ru-translit": "andreaschari/bge-m3-RU_MMARCO_TRANSLIT",
    "bge-m3-ru-mixed": "andreaschari/bge-m3-RU_MMARCO_50_MIXED",
    "mt5-zh-native": "andreaschari/mt5-ZH_MMARCO_NATIVE",
    "mt5-zh-native-anserini": "andreaschari/mt5-ZH_MMARCO_NATIVE_ANSERINI",
    "mt5-zh-translit": "andreaschari/mt5-ZH_MMARCO_TRANSLIT",
    "mt5-zh-translit-anserini": "andreaschari/mt5-ZH_MMARCO_TRANSLIT_ANSERINI",
    "mt5-zh-mixed": "andreaschari/mt5-ZH_MMARCO_50_MIXED",
    "mt5-zh-mixed-anserini": "andreaschari/mt5-ZH_MMARCO_50_MIXED_ANSERINI",
    "mt5-ru-native": "andreaschari/mt5-RU_MMARCO_NATIVE",
    "mt5-ru-translit": "andreaschari/mt5-RU_MMARCO_TRANSLIT",
    "mt5-ru-mixed": "andreaschari/mt5-RU_MMARCO_50_MIXED",
    # translation (translate_queries.py --engine hf)
    "nllb-200-600m": "facebook/nllb-200-distilled-600M",
    "nllb-200-1.3b": "facebook/nllb-200-distilled-1.3B",
}

# What each family loads, beside config.json, the weights and the tokenizer.
FAMILY_FILES = {"mt5": ("generation_config.json",), "bge-m3": (),
                "colbert-xm": ("artifact.metadata",)}
# The weights, in order of preference: one copy only (a repo may hold several formats).
WEIGHTS = (("model.safetensors",),
           ("model.safetensors.index.json", "model-*-of-*.safetensors"),
           ("pytorch_model.bin",),
           ("pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "spiece.model", "sentencepiece.bpe.model")
VOCABULARY_FILES = ("tokenizer.json", "spiece.model", "sentencepiece.bpe.model")
# family -> (the model types whose vocabulary the base tokenizer is, the base model)
BASE_TOKENIZERS = {
    "mt5": (("mt5",), "unicamp-dl/mt5-base-mmarco-v2"),
    "bge-m3": (("xlm-roberta",), "BAAI/bge-m3"),
    # facebook/xmod-base ships no tokenizer: its card (and ColBERT-XM's) use XLM-R's
    "colbert-xm": (("xmod",), "FacebookAI/xlm-roberta-base"),
}
TOKENIZER_FLAG = "pass --tokenizer ID_OR_PATH (tok_model= in Python)"
# Seconds one probe of the hub may take before a model is fetched: without network, a run
# learns it in seconds, instead of after huggingface_hub's retries (~50 s, dozens of lines).
HUB_TIMEOUT = 3.0


def is_model_path(name_or_path):
    """Whether a name that is not a short name is an existing local directory or an "org/name"
    HF id."""
    return Path(name_or_path).is_dir() or (name_or_path.count("/") == 1
                                           and not name_or_path.startswith((".", "/", "~")))


def resolve_model(name_or_path, names=None):
    """A short name -> its HF id; an existing local directory -> its path; an "org/name" HF id as
    is. ``names``: the short names the flag accepts, for the error (default: every model's)."""
    if name_or_path in MODELS:
        return MODELS[name_or_path]
    if Path(name_or_path).is_dir():
        return str(Path(name_or_path))
    if is_model_path(name_or_path):
        return name_or_path
    raise UsageError(f"unknown model {name_or_path!r}: not a short name "
                     f"({', '.join(names or MODELS)}), "
                     "not an existing directory, and not a Hugging Face id of the form org/name")


def model_label(name_or_path):
    """The model's name in run-file names: the short name, or the last part of a path or HF id."""
    if name_or_path in MODELS:
        return name_or_path
    return Path(str(name_or_path).rstrip("/")).name


def size_text(n):
    """Bytes as the hub shows them: 841 B, 5.07 MB, 2.33 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def select_files(files, family):
    """The files of a repository (names relative to its root) that ``family`` loads: config.json,
    one copy of the weights, the tokenizer files and the family's own; "tokenizer": the
    tokenizer files and config.json only. Returns (selected, missing) where ``missing`` names
    what a model of the family cannot do without (empty when it can be loaded)."""
    files = set(files)
    wanted = {"config.json", *TOKENIZER_FILES, *FAMILY_FILES.get(family, ())}
    selected = sorted(f for f in files if f in wanted)
    if family == "tokenizer":
        return selected, [] if files & set(VOCABULARY_FILES) else [" or ".join(VOCABULARY_FILES)]
    missing = [] if "config.json" in files else ["config.json"]
    weights = next(([f for f in files if any(fnmatch(f, p) for p in patterns)]
                    for patterns in WEIGHTS if patterns[0] in files), None)
    if weights is None:
        missing.append("model.safetensors or pytorch_model.bin")
    return sorted(selected + (weights or [])), missing


def _local_files(folder):
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.stat().st_size
            for p in folder.rglob("*") if p.is_file()}


def fetch(model, family):
    """The local folder holding what ``family`` ("mt5", "bge-m3", "colbert-xm", or "tokenizer"
    for a tokenizer only) loads of ``model`` (a short name, HF id or local folder): a local
    folder as is, an HF id from the hub cache, downloading only those files when the hub can
    be reached. Raises a UserError that says which of three cases it is: the model is neither
    cached nor reachable; the hub repository lacks a file; the local folder lacks a file."""
    path = resolve_model(model)
    what = "tokenizer" if family == "tokenizer" else "model"
    if Path(path).is_dir():
        _, missing = select_files(_local_files(path), family)
        if missing:
            holds = "tokenizer.json or spiece.model, tokenizer_config.json" if \
                what == "tokenizer" else "config.json, model.safetensors, the tokenizer's files"
            raise UserError(f"{path}: no {' and no '.join(missing)} in this folder; a {what} "
                            f"folder holds what save_pretrained writes ({holds})")
        return Path(path)
    from huggingface_hub import constants
    return _fetch_from_hub(path, family, what, constants.HF_HUB_CACHE)


def hub_unreachable():
    """Why the Hugging Face hub cannot be asked (a few words), or None when it answers: one
    request with a short timeout (HUB_TIMEOUT), through the proxies the environment sets."""
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE=1 is set"
    proxies = tuple(os.environ.get(k) for k in ("https_proxy", "HTTPS_PROXY", "all_proxy",
                                                 "ALL_PROXY", "no_proxy", "NO_PROXY"))
    return _probe(constants.ENDPOINT, proxies)


@functools.cache  # once per process and endpoint: the answer does not change within a run
def _probe(endpoint, proxies):
    import requests
    try:  # any HTTP answer, even an error status, means the hub can be reached
        requests.head(endpoint, timeout=HUB_TIMEOUT, allow_redirects=False)
    except requests.RequestException as e:
        return f"the hub cannot be reached ({type(e).__name__})"
    return None


def check_loadable(model, family, tok_model=None):
    """Fail now, in one line, when ``model`` (and its tokenizer) cannot be loaded later: a local
    folder that lacks files, an HF id neither in the cache nor reachable. The scripts call it
    before their long work; what it fetches is what the work would fetch first anyway."""
    tokenizer_source(model, family, tok_model)


@functools.cache  # once per process (and hub cache): a second encoder of a model asks no more
def _fetch_from_hub(path, family, what, cache_dir):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    why = hub_unreachable()
    if why:  # no request that would only time out and retry: the cache must do
        return _cached(path, family, what, cache_dir, why)
    try:
        info = huggingface_hub.HfApi().model_info(path, files_metadata=True,
                                                  timeout=10 * HUB_TIMEOUT)
    except (RepositoryNotFoundError, GatedRepoError) as e:
        kind = "is gated: accept its terms on the hub and log in" if isinstance(
            e, GatedRepoError) else "does not exist on the Hugging Face hub (or is private: " \
            "log in with huggingface-cli login)"
        raise UserError(f"cannot load {what} {path}: the repository {kind}") from None
    except OSError as e:  # the hub went away since the probe: the cache must do
        return _cached(path, family, what, cache_dir, f"the hub cannot be reached "
                                                      f"({type(e).__name__})")
    sizes = {s.rfilename: s.size or 0 for s in info.siblings or []}
    selected, missing = select_files(sizes, family)
    if missing:
        raise UserError(f"cannot load {what} {path}: the hub repository has no "
                        f"{' and no '.join(missing)} (it holds {', '.join(sorted(sizes))})")
    skipped = sorted(set(sizes) - set(selected) - {".gitattributes", "README.md"})
    log.info("%s: fetching %s (%s in all)%s", path,
             ", ".join(f"{f} ({size_text(sizes[f])})" for f in selected),
             size_text(sum(sizes[f] for f in selected)),
             f"; not fetched: {', '.join(f'{f} ({size_text(sizes[f])})' for f in skipped)}"
             if skipped else "")
    start = time.time()
    folder = Path(huggingface_hub.snapshot_download(path, allow_patterns=selected,
                                                    cache_dir=cache_dir))
    log.info("%s: in the Hugging Face cache at %s (%.1fs)", path, folder, time.time() - start)
    return folder


def _cached(path, family, what, cache_dir, why):
    """The cached snapshot of ``path`` when the hub cannot be asked (``why``), if it holds
    what ``family`` needs."""
    import huggingface_hub
    fix = "run this once where the hub can be reached (only the files it loads are fetched) " \
          "or pass a local folder"
    try:
        folder = Path(huggingface_hub.snapshot_download(path, local_files_only=True,
                                                        cache_dir=cache_dir))
    except OSError:
        reason = f"not in the local Hugging Face cache and {why}"
        raise _error(f"cannot load {what} {path}: {reason}; {fix}", reason) from None
    _, missing = select_files(_local_files(folder), family)
    if missing:
        reason = f"its {' and '.join(missing)} is not in the local Hugging Face cache " \
                 f"({folder}) and {why}"
        raise _error(f"cannot load {what} {path}: {reason}; {fix}", reason)
    log.info("%s: from the Hugging Face cache at %s (%s)", path, folder, why)
    return folder


def _error(message, reason):
    """A UserError that also carries its reason alone, for a message that wraps it."""
    error = UserError(message)
    error.reason = reason
    return error


def has_tokenizer(folder):
    return any((Path(folder) / f).is_file() for f in VOCABULARY_FILES)


def read_config(folder):
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))


def tokenizer_source(model, family, tok_model=None):
    """(name, folder) of the tokenizer a ``family`` model uses: ``tok_model`` if given, else
    the checkpoint's own, else its base model's (BASE_TOKENIZERS) when the checkpoint's
    config says it has that base's vocabulary. ``name`` is what to record (an HF id or a
    path); the provenance of a run names it."""
    if tok_model:
        return resolve_model(tok_model), fetch(tok_model, "tokenizer")
    folder = fetch(model, family)
    name = resolve_model(model)
    if has_tokenizer(folder):
        return name, folder
    absent = f"{name} ships no tokenizer (no {', '.join(VOCABULARY_FILES)})"
    model_types, base = BASE_TOKENIZERS[family]
    model_type = read_config(folder).get("model_type")
    if model_type not in model_types:
        raise UserError(f"{absent}, and its config.json (model_type {model_type}) names no "
                        f"base model whose tokenizer fits; {TOKENIZER_FLAG}")
    try:
        base_folder = fetch(base, "tokenizer")
    except UserError as e:
        reason = getattr(e, "reason", f"not loadable ({e})")
        raise UserError(f"{absent}, and its base model's, {base}, is {reason}; run this once "
                        f"where the hub can be reached (the base's tokenizer files are "
                        f"fetched), or {TOKENIZER_FLAG}") from None
    log.info("%s ships no tokenizer: using its base model's, %s", name, base)
    return base, base_folder


def tokenizer_used(model, family, tok_model=None):
    """The name (HF id or path) of the tokenizer a ``family`` model is loaded with: the
    checkpoint's own, its base model's, or ``tok_model``'s."""
    return tokenizer_source(model, family, tok_model)[0]


def load_tokenizer(model, family, tok_model=None):
    """(tokenizer, name): the tokenizer of tokenizer_source, checked against the model's
    vocabulary (every token id must have an embedding)."""
    from transformers import AutoTokenizer
    name, folder = tokenizer_source(model, family, tok_model)
    tokenizer = from_pretrained(AutoTokenizer, str(folder))
    vocab_size = read_config(fetch(model, family)).get("vocab_size")
    if vocab_size and len(tokenizer) > vocab_size:
        raise UserError(f"the tokenizer {name} has {len(tokenizer)} tokens, more than the "
                        f"{vocab_size} of {resolve_model(model)}'s vocabulary: not this model's "
                        f"tokenizer; {TOKENIZER_FLAG}")
    return tokenizer, name


def from_pretrained(loader, model, **options):
    """``loader.from_pretrained(model)`` (an AutoModel/AutoTokenizer class), with the ways it
    fails for a user reported as a UserError: offline and not cached, a hub repository or a
    local folder without the file."""
    try:
        return loader.from_pretrained(model, **options)
    except OSError as e:
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, \
            RepositoryNotFoundError
        causes, cause = [], e
        while cause is not None:
            causes.append(cause)
            cause = cause.__cause__ or cause.__context__
        if Path(model).is_dir():
            where = "the folder holds no model of this kind"
        elif any(isinstance(c, LocalEntryNotFoundError) for c in causes):
            where = "not in the local Hugging Face cache and the hub cannot be reached " \
                    "(offline or HF_HUB_OFFLINE=1?); run this once where the hub can be reached"
        elif any(isinstance(c, RepositoryNotFoundError) for c in causes):
            where = "no such repository on the Hugging Face hub"
        elif any(isinstance(c, EntryNotFoundError) for c in causes):
            where = "the hub repository lacks a file it needs"
        else:
            where = "not loadable"
        raise UserError(f"cannot load model {model}: {where} "
                        f"({str(e).splitlines()[0][:160]})") from None
