"""The paper's released data, fetched on first use from the Hugging Face hub.

The authors released their query translations and training files as the dataset repository
``andreaschari/mmarco-lt``:

    queries/dev_small/{variety}.tsv                          the variety's dev/small queries, one
                                                             file per pair (af ca gd ms oc scn yue)
    queries/train/mmarco.v2.{hr}_{variety}.train.judged.tsv  the variety's training queries with
                                                             qrels (dt_af, fr_ca)
    train_with_negs/triples.{hr}_{variety}.train.HN.2way.2.0M.jsonl
                                                             the BGE-M3 training file (~2.0M lines)

Files go through huggingface_hub's cache (``HF_HUB_OFFLINE=1`` uses only the cache). Their
layouts beyond these names were not verified here: every file is read by the same strict readers
as a user's own file, and one that is not what they expect is an error naming it. A file the
user put at the place a script looks first (``data/translations/``) always wins. A cached file
is checked against the checksum the cache names it by (crossvariety.data.downloads.check_hub_file).
"""
import logging
from pathlib import Path

from . import downloads
from .datasets import QueryFileError, read_queries, write_queries
from ..errors import UsageError, UserError

log = logging.getLogger(__name__)

REPO = "andreaschari/mmarco-lt"
# The pairs with released dev/small queries (all seven of the paper) ...
DEV_QUERIES = {pair: f"queries/dev_small/{pair.split('-')[0]}.tsv"
               for pair in ["ca-fr", "oc-fr", "af-dt", "scn-it", "yue-zh", "ms-id", "gd-en"]}
# ... and the two the paper trained on: the released file names put the high-resource side first.
_TRAINED = {"ca-fr": "fr_ca", "af-dt": "dt_af"}
TRAIN_QUERIES = {pair: f"queries/train/mmarco.v2.{code}.train.judged.tsv"
                 for pair, code in _TRAINED.items()}
TRAINING_FILES = {pair: f"train_with_negs/triples.{code}.train.HN.2way.2.0M.jsonl"
                  for pair, code in _TRAINED.items()}


def fetch(filename):
    """The local path of a file of the released dataset (downloaded into the hub cache once),
    checked against its hub checksum each time (huggingface_hub checks only the size)."""
    from huggingface_hub import hf_hub_download
    try:
        path = Path(hf_hub_download(REPO, filename, repo_type="dataset"))
    except OSError as e:  # offline and not cached, no network, no such file (all OSErrors)
        kind = type(e).__name__
        reason = ("not in the local Hugging Face cache, and the hub cannot be reached (offline, "
                  "or HF_HUB_OFFLINE=1)" if kind == "LocalEntryNotFoundError" else
                  "the dataset has no such file" if kind == "EntryNotFoundError" else
                  f"{kind}: {str(e).splitlines()[0][:160]}" if str(e) else kind)
        raise UserError(f"could not get {filename} of the paper's released data (Hugging Face "
                        f"dataset {REPO}): {reason}; download it with `huggingface-cli download "
                        f"--repo-type dataset {REPO} {filename}` where the hub can be reached, "
                        "or put your own file where the script looks for it") from None
    return downloads.check_hub_file(path)


def install_queries(pair_name, target, split="dev", known_qids=None):
    """Put the paper's variety queries of a pair (``split`` dev: its dev/small queries; train:
    its judged training queries) at ``target``, where the scripts look for them, and return the
    path. The released file is read strictly (one tab, no duplicates, ``known_qids`` if given)
    and written in the project's own format."""
    files = DEV_QUERIES if split == "dev" else TRAIN_QUERIES
    if pair_name not in files:
        raise UsageError(f"the paper released {split} queries for {', '.join(files)} only, not "
                         f"{pair_name}")
    source = fetch(files[pair_name])
    try:
        queries = read_queries(source, known_qids=known_qids)
    except QueryFileError as e:
        raise UserError(f"the paper's released file {REPO}/{files[pair_name]} is not what this "
                        f"code expects ({e}); put a checked copy at {target}") from None
    write_queries(queries, target)
    log.info("using the paper's released %s queries of %s (%s/%s, %d queries) -> %s", split,
             pair_name, REPO, files[pair_name], len(queries), target)
    return Path(target)


def resolve(spec, kind):
    """A path given as ``paper:PAIR`` -> the released file of that kind ("training" file or
    "train-queries"), fetched; any other string is a path, returned as is."""
    spec = str(spec)
    if not spec.startswith("paper:"):
        return spec
    pair = spec[len("paper:"):]
    files = TRAINING_FILES if kind == "training" else TRAIN_QUERIES
    if pair not in files:
        raise UsageError(f"{spec}: the paper released {kind} files for "
                         f"{', '.join('paper:' + p for p in files)} only")
    return str(fetch(files[pair]))
