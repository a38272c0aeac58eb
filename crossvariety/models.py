"""The model registry: the paper's short model names -> Hugging Face ids. Local paths work too."""
from pathlib import Path

from .errors import UsageError, UserError

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
    # translation (translate_queries.py --engine hf)
    "nllb-200-600m": "facebook/nllb-200-distilled-600M",
    "nllb-200-1.3b": "facebook/nllb-200-distilled-1.3B",
}


def resolve_model(name_or_path):
    """A short name -> its HF id; an existing local directory -> its path; an "org/name" HF id as is."""
    if name_or_path in MODELS:
        return MODELS[name_or_path]
    if Path(name_or_path).is_dir():
        return str(Path(name_or_path))
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~")):
        return name_or_path
    raise UsageError(f"unknown model {name_or_path!r}: not a short name ({', '.join(MODELS)}), "
                     "not an existing directory, and not a Hugging Face id of the form org/name")


def from_pretrained(loader, model, **options):
    """``loader.from_pretrained(model)`` (an AutoModel/AutoTokenizer class), with a model that
    is neither a local folder nor reachable on the hub reported as a UserError."""
    try:
        return loader.from_pretrained(model, **options)
    except OSError as e:
        where = "the folder holds no model of this kind" if Path(model).is_dir() else \
            "not in the local Hugging Face cache and the hub cannot be reached (offline or " \
            "HF_HUB_OFFLINE=1?)"
        raise UserError(f"cannot load model {model}: {where}; download it once with network "
                        f"access (huggingface-cli download {model}) or pass a local folder "
                        f"({str(e).splitlines()[0][:160]})") from None


def model_label(name_or_path):
    """The model's name in run-file names: the short name, or the last part of a path or HF id."""
    if name_or_path in MODELS:
        return name_or_path
    return Path(str(name_or_path).rstrip("/")).name
