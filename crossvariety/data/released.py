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

The follow-up paper, "Lost in Transliteration" (SIGIR 2025), released its romanised queries in
the Hugging Face collection ``andreaschari/sigir2025-lost-in-transliteration``. The dataset's id
and file names could not be checked here (no hub): TRANSLIT_REPO and TRANSLIT_QUERIES below are
assumptions, the names the authors' transliterate.py writes (``{irds id with _ for /}_uroman.tsv``:
``qid<TAB>query`` for mMARCO, ``qid<TAB>ht_title<TAB>mt_title<TAB>ht_description`` for neuCLIR).
``$CROSSVARIETY_TRANSLIT_REPO`` names another dataset id. Such a file is read defensively
(install_translit_queries): any other layout is a one-line error naming the file and the line.
run_mmarco.py fetches them on first use, as it does the first paper's translations, for a pair
of native topics and their plain romanisation (rus_Latn-rus_Cyrl over mMARCO Russian
dev/small) whose query file is missing; translate_queries.py --engine uroman makes the same
queries locally.
"""
import logging
import os
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

# "Lost in Transliteration" (SIGIR 2025): its romanised queries (uroman, no language rules) of
# the topics it evaluated, by irds: id -> (file, the file's columns after the qid). Assumed,
# not verified (see the module doc).
TRANSLIT_REPO = os.environ.get("CROSSVARIETY_TRANSLIT_REPO") or "andreaschari/transliterations"
NEUCLIR_COLUMNS = ("ht_title", "mt_title", "ht_description")
TRANSLIT_QUERIES = {
    **{f"irds:mmarco/v2/{lang}/dev/small": (f"mmarco_v2_{lang}_dev_small_uroman.tsv", ("text",))
       for lang in ("zh", "ru")},
    **{f"irds:neuclir/1/{lang}/trec-{year}": (f"neuclir_1_{lang}_trec-{year}_uroman.tsv",
                                              NEUCLIR_COLUMNS)
       for lang in ("zh", "ru") for year in (2022, 2023)},
}


def fetch(filename, repo=None, what="the paper's released data"):
    """The local path of a file of the released dataset (downloaded into the hub cache once),
    checked against its hub checksum each time (huggingface_hub checks only the size).
    ``repo``: another released dataset (default REPO); ``what`` names it in errors."""
    from huggingface_hub import hf_hub_download
    repo = repo or REPO
    try:
        path = Path(hf_hub_download(repo, filename, repo_type="dataset"))
    except OSError as e:  # offline and not cached, no network, no such file (all OSErrors)
        kind = type(e).__name__
        reason = ("not in the local Hugging Face cache, and the hub cannot be reached (offline, "
                  "or HF_HUB_OFFLINE=1)" if kind == "LocalEntryNotFoundError" else
                  "the dataset has no such file" if kind == "EntryNotFoundError" else
                  f"{kind}: {str(e).splitlines()[0][:160]}" if str(e) else kind)
        raise UserError(f"could not get {filename} of {what} (Hugging Face "
                        f"dataset {repo}): {reason}; download it with `huggingface-cli download "
                        f"--repo-type dataset {repo} {filename}` where the hub can be reached, "
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


def has_translit_queries(pair, topics_spec):
    """Whether the follow-up released the variety queries of ``pair`` over ``topics_spec``: the
    topics are ones it romanised and the variety is their plain romanisation (rus_Latn for
    Russian topics; not a segmented one such as zho_Latn-anserini)."""
    from .languages import canonical, iso639_3
    return topics_spec in TRANSLIT_QUERIES and f"/{canonical(pair.analyzer)}/" in topics_spec \
        and pair.variety == f"{iso639_3(pair.analyzer)}_Latn" != pair.highres


def install_translit_queries(spec, target, field=None, known_qids=None):
    """Put the "Lost in Transliteration" authors' romanised queries of the topics ``spec`` (an
    irds: id of TRANSLIT_QUERIES) at ``target`` in the project's query format, and return the
    path. ``field``: neuCLIR's column (ht_title, the paper's; mt_title, ht_description).
    The released file is read defensively: every line must be the qid and the layout's
    columns, tab-separated, none empty, each qid once and (with ``known_qids``) a qid of the
    topics, every qid of the topics there; else one line names the file, the line and what
    was found, and nothing is written."""
    spec = str(spec)
    if spec not in TRANSLIT_QUERIES:
        raise UsageError(f"the transliteration paper released romanised queries of "
                         f"{', '.join(TRANSLIT_QUERIES)} only, not {spec}")
    filename, columns = TRANSLIT_QUERIES[spec]
    field = field or columns[0]
    if field not in columns:
        raise UsageError(f"{spec}: the released romanised queries have the fields "
                         f"{', '.join(columns)}, not {field}")
    source = fetch(filename, TRANSLIT_REPO, "the transliteration paper's released queries")
    queries = read_translit_file(source, f"{TRANSLIT_REPO}/{filename}", columns, field,
                                 known_qids, target)
    write_queries(queries, target)
    log.info("using the transliteration paper's released romanised queries of %s (%s/%s, %s, "
             "%d queries) -> %s", spec, TRANSLIT_REPO, filename, field, len(queries), target)
    return Path(target)


def read_translit_file(path, name, columns, field, known_qids=None, target=None):
    """(qid, query) of a released romanised query file ``path`` (``name`` in errors): lines
    ``qid<TAB>column...`` with ``columns``, the ``field`` column taken. Errors are one line."""
    import pandas as pd
    from .textfiles import read_lines
    layout = "qid<TAB>" + "<TAB>".join(columns)
    fix = f"put a checked copy at {target}" if target else "check the file"
    known = None if known_qids is None else set(map(str, known_qids))
    rows, seen, column = [], {}, columns.index(field) + 1

    def refuse(lineno, problem):
        return UserError(f"the released file {name} ({path}) is not what this code expects: "
                         f"line {lineno}: {problem} (layout {layout}); {fix}")
    lineno = 0
    for lineno, line in read_lines(path):
        fields = line.split("\t")
        if len(fields) != len(columns) + 1:
            raise refuse(lineno, f"{len(fields)} field(s), not {len(columns) + 1}: {line[:60]!r}")
        qid, text = fields[0].strip(), fields[column].strip()
        if not qid or not text:
            raise refuse(lineno, f"an empty qid or {field}: {line[:60]!r}")
        if qid in seen:
            raise refuse(lineno, f"qid {qid!r} again (first on line {seen[qid]})")
        if known is not None and qid not in known:
            raise refuse(lineno, f"qid {qid!r} is not a query of the topics"
                         + (" (a header line?)" if lineno == 1 else ""))
        seen[qid] = lineno
        rows.append((qid, text))
    if not rows:
        raise refuse(lineno, "no queries in the file")
    missing = sorted(known - set(seen)) if known is not None else []
    if missing:
        raise UserError(f"the released file {name} ({path}) lacks {len(missing)} of the "
                        f"{len(known)} qids of the topics (e.g. {', '.join(missing[:5])}); {fix}")
    return pd.DataFrame(rows, columns=["qid", "query"])
