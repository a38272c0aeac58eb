"""Every user error of every script: one line on stderr, `script.py: what is wrong, and the fix`,
a non-zero status (2 for wrong arguments and settings, 1 for files, data and downloads), and no
traceback. Nothing is written."""
import concurrent.futures
import re

import pytest

from conftest import CA_DEV_QUERIES, REPO, run_script

# A proxy nobody listens on: a download fails at once, network or not.
NO_NETWORK = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
              "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
              "FLORES_DIR": ""}

CASES = [
    # script, arguments, status, what the one line says
    ("index_bm25.py", ["--dataset", "nope"], 1, r"dataset 'nope' is neither an irds: id nor a "
                                                r"directory; give an irds: id"),
    ("index_bm25.py", ["--dataset", "irds:mmarco/v2/xx"], 1,
     r"unknown ir_datasets id 'mmarco/v2/xx'"),
    ("index_bm25.py", ["--dataset", "irds:mmarco/v2/fr", "--lang", "xx"], 2,
     r"unknown language 'xx': use an ISO 639 code"),
    ("index_bm25.py", ["--dataset", "empty"], 2, r"the language of empty is unknown; pass --lang"),
    ("index_bm25.py", ["--dataset", "empty", "--lang", "pt"], 1,
     r"empty: no docs.tsv\(.gz\) or docs.jsonl\(.gz\); write the documents there"),
    ("index_bm25.py", ["--dataset", "baddocs", "--lang", "pt"], 1,
     r"baddocs/docs.tsv:2: no tab between docno and text"),
    ("index_bm25.py", ["--workers", "many"], 2, r"argument --workers: invalid int value: 'many' "
                                                r"\(see --help\)"),
    ("index_bm25.py", ["--cjk", "trigrams", "--dataset", "irds:mmarco/v2/fr"], 2,
     r"unknown CJK analysis 'trigrams'"),
    ("index_bm25.py", ["--config", "unknown_key.toml"], 2,
     r"unknown_key.toml: \[index_bm25\] has unknown key 'worker'; known keys: dataset"),
    ("run_mmarco.py", ["--pairs", "xx-fr"], 2, r"unknown language pair 'xx-fr' \(unknown language "
                                               r"'xx'.*\); known pairs: ca-fr"),
    ("run_mmarco.py", ["--model", "bge-m4"], 2, r"unknown model 'bge-m4': not a short name"),
    ("run_mmarco.py", ["--model", "./models/mine"], 2, r"unknown model './models/mine'"),
    ("run_mmarco.py", ["--rerank", "mt6"], 2, r"unknown model 'mt6'"),
    ("run_mmarco.py", ["--translate-queries", "babel"], 2, r"unknown engine 'babel'; choose from "
                                                           r"apertium, opencc, hf"),
    ("run_mmarco.py", ["--measures", "MRR@ten"], 2, r"unknown measure 'MRR@ten'"),
    ("run_mmarco.py", ["--benchmark", "trec"], 2, r"unknown benchmark 'trec'"),
    ("run_mmarco.py", ["--cjk", "words"], 2, r"unknown CJK analysis 'words'"),
    ("run_mmarco.py", ["--config", "wrong_type.toml"], 2,
     r"wrong_type.toml: \[run_mmarco\] num_results: expected int, got 'five'"),
    ("run_mmarco.py", ["--config", "bad_pair.toml"], 2,
     r"bad_pair.toml: \[pairs.gl-pt\] has unknown key\(s\) colection"),
    ("run_mmarco.py", ["--config", "missing.toml"], 2, r"config file missing.toml does not exist"),
    ("run_mmarco.py", ["--pairs", "ca-fr", "--variety-queries", "nope.tsv"], 1,
     r"no ca queries for ca-fr at nope.tsv; put the ca version of irds:mmarco/v2/fr/dev/small"),
    ("run_mmarco.py", ["--pairs", "oc-fr"], 1,
     r"could not get queries/dev_small/oc.tsv of the paper's released data \(Hugging Face dataset "
     r"andreaschari/mmarco-lt\): not in the local Hugging Face cache"),
    ("run_mmarco.py", ["--variety-queries", "bad.tsv"], 1,
     r"bad.tsv: 2 malformed line\(s\): bad.tsv:2: no tab between qid and query.*\| bad.tsv:3: "
     r"qid '999' is not a query"),
    ("run_mmarco.py", ["--pairs", "gl-pt"], 2, r"pair gl-pt has no collection: pass --collection"),
    ("run_mmarco.py", ["--collection", "nope"], 1, r"dataset 'nope' is neither an irds: id"),
    ("run_mmarco.py", ["--benchmark", "flores", "--collection", "x"], 2,
     r"--collection and --topics go with --benchmark mmarco"),
    ("run_mmarco.py", ["--benchmark", "flores", "--flores-dir", "nope"], 1,
     r"flores_dir nope does not exist; --flores-dir takes the FLORES-200 release"),
    ("run_mmarco.py", ["--benchmark", "flores", "--pairs", "fur-it", "--data-dir", "d"], 1,
     r"no fur_\*.devtest.gz \(Friulian\) in .*, and could not download FLORES-200 from "
     r"https://dl.fbaipublicfiles.com/.*; put the file in a folder with metadata_devtest.tsv.gz "
     r"and set \$FLORES_DIR; --flores-dir takes the FLORES-200 release"),
    ("run_mmarco.py", ["--pairs", "scn-it", "--variety-queries", "scn.tsv"], 1,
     r"irds:mmarco/v2/it/dev/small: ir_datasets could not download https://\S+ \(no network\?\); "
     r"download it and put it at \S+, then run again"),
    ("evaluate.py", ["nope.res.gz", "--qrels", "irds:mmarco/v2/fr/dev/small"], 1,
     r"run file nope.res.gz not found"),
    ("evaluate.py", ["bad.res", "--qrels", "irds:mmarco/v2/fr/dev/small"], 1,
     r"bad.res:1: not a TREC run line \(qid Q0 docno rank score name\): .101 Q0.; fix the file"),
    ("evaluate.py", ["run.res"], 2, r"--qrels DATASET is required"),
    ("evaluate.py", ["run.res", "--qrels", "nope"], 1, r"dataset 'nope' is neither"),
    ("evaluate.py", ["run.res", "--qrels", "empty"], 1, r"empty: no qrels.txt\(.gz\)"),
    ("evaluate.py", ["run.res", "--qrels", "irds:mmarco/v2/fr", "--baseline", "5"], 2,
     r"--baseline '5' is not a run position from 1 to 1"),
    ("evaluate.py", ["run.res", "--qrels", "irds:mmarco/v2/fr/dev/small", "--format", "html"], 2,
     r"unknown format 'html'"),
    ("evaluate.py", ["run.res", "--qrels", "irds:mmarco/v2/fr"], 1,
     r"irds:mmarco/v2/fr has no qrels; pick a topic set"),
    ("rerank_mt5.py", [], 2, r"--run is required"),
    ("rerank_mt5.py", ["--run", "run.res", "--dataset", "irds:mmarco/v2/fr", "--queries", "q.tsv",
                       "--model", "mt6"], 2, r"unknown model 'mt6'"),
    ("rerank_mt5.py", ["--run", "run.res", "--dataset", "irds:mmarco/v2/fr", "--queries",
                       "nope.tsv"], 1, r"nope.tsv: query file not found"),
    ("index_bgem3.py", ["--shard", "2/1"], 2, r"--shard '2/1': write i/n with 0 <= i < n"),
    ("index_bgem3.py", ["--dataset", "irds:mmarco/v2/fr", "--model", "org/not-cached"], 1,
     r"cannot load model org/not-cached: not in the local Hugging Face cache and HF_HUB_OFFLINE=1 "
     r"is set; run this once where the hub can be reached"),
    ("index_colbertxm.py", ["--model", "bge-m3"], 2, r"bge-m3 is not a ColBERT-XM checkpoint"),
    ("index_colbertxm.py", ["--dataset", "empty"], 2,
     r"the language of empty is unknown; pass --language"),
    ("finetune_colbertxm.py", ["--train", "good.jsonl"], 2, r"--language is required"),
    ("run_mmarco.py", ["--model", "mt5"], 2, r"mt5 is not a first-stage model"),
    ("run_neuclir.py", ["--datasets", "irds:neuclir/1/xx/trec-2022"], 1,
     r"unknown ir_datasets id 'neuclir/1/xx/trec-2022'"),
    ("run_neuclir.py", ["--datasets", "irds:neuclir/1/fa/trec-2022", "--query-field", "desc",
                        "--models", "bge-m3"], 1, r"queries have no field 'desc'"),
    ("translate_queries.py", ["--engine", "babel"], 2, r"unknown engine 'babel'"),
    ("translate_queries.py", ["--queries", "q.tsv", "--src", "xx", "--tgt", "ca", "--out", "o"],
     2, r"unknown language 'xx'"),
    ("translate_queries.py", ["--queries", "q.tsv", "--src", "fr", "--tgt", "ca"], 2,
     r"--out is required, or --pair"),
    ("translate_queries.py", ["--pair", "gl-pt"], 2, r"pair gl-pt has no topics to translate"),
    ("translate_queries.py", ["--queries", "q.tsv", "--src", "scn", "--tgt", "it", "--out", "o"],
     1, r"Apertium has no scn->it pair here"),
    ("mine_negatives.py", ["--pair", "xx-fr"], 2, r"unknown language pair 'xx-fr'"),
    ("mine_negatives.py", ["--source", "run"], 2, r"--source run needs --run FILE"),
    ("mine_negatives.py", ["--pair", "gl-pt"], 2,
     r"pair gl-pt has no training topics or collection"),
    ("mine_negatives.py", ["--source", "run", "--run", "run.res"], 1,
     r"could not get queries/train/mmarco.v2.fr_ca.train.judged.tsv of the paper's released"),
    ("mine_negatives.py", ["--source", "run", "--run", "run.res", "--queries", "nope.tsv"], 1,
     r"nope.tsv: query file not found"),
    ("finetune_mt5.py", ["--train", "bad.jsonl"], 1,
     r"bad.jsonl:2: no pos, neg; a training example is"),
    ("finetune_mt5.py", ["--train", "good.jsonl", "--triples", "nope.tsv"], 1,
     r"triples file nope.tsv not found"),
    ("finetune_bgem3.py", ["--train", "nope.jsonl"], 1, r"training file nope.jsonl not found"),
    ("finetune_bgem3.py", ["--train", "good.jsonl", "--dtype", "bf16"], 2,
     r"--dtype bf16 needs a GPU \(bf16 autocast\); use fp32 or auto on a CPU"),
    ("finetune_bgem3.py", ["--train", "noneg.jsonl"], 1,
     r"noneg.jsonl:2: no negative \(1 such lines\); --group-size 2 needs one per line"),
    ("finetune_bgem3.py", ["--train", "paper:gd-en"], 2,
     r"paper:gd-en: the paper released training files for paper:ca-fr, paper:af-dt only"),
    ("rerank_mt5.py", ["--run", "r.res", "--dataset", "d", "--queries", "q.tsv", "--dtype",
                       "fp16"], 2, r"--dtype 'fp16': choose auto, bf16, fp32, fp8"),
    ("rerank_mt5.py", ["--run", "r.res", "--dataset", "d", "--queries", "q.tsv", "--compile",
                       "yes"], 2, r"--compile 'yes': choose auto, on, off"),
    ("index_bgem3.py", ["--tokenizer-workers", "-1"], 2,
     r"--tokenizer-workers '-1': a number of processes \(0 = none\) or auto"),
    ("make_tables.py", ["--experiments", "rq9"], 2,
     r"unknown experiment\(s\) rq9; choose from rq1"),
    ("make_tables.py", ["--rename", "bge-m3-lt-cafr"], 2, r"--rename takes PAPER=OURS"),
    ("make_tables.py", ["--format", "html"], 2, r"unknown format 'html'"),
    ("make_tables.py", ["--config", "bad_pair.toml"], 2, r"\[pairs.gl-pt\] has unknown key"),
    # issue #19: bad values and outputs found before the long work
    ("run_mmarco.py", ["--num-results", "-5"], 2,
     r"--num-results -5: a count must be 1 or more \(passages retrieved per query\)"),
    ("index_bm25.py", ["--workers", "-3"], 2, r"--workers -3: a count must be 0 or more"),
    ("run_mmarco.py", ["--config", "no_pairs.toml"], 2,
     r"no_pairs.toml: \[run_mmarco\] pairs = \[\]: an empty list names nothing"),
    ("run_mmarco.py", ["--config", "latin1.toml"], 2,
     r"latin1.toml:2: not UTF-8 \(byte 0xe9 at byte offset 18\); TOML files are UTF-8"),
    ("run_mmarco.py", ["--runs-dir", "afile/runs"], 1,
     r"cannot write afile/runs: afile is a file, not a folder; pass another --runs-dir"),
    ("translate_queries.py", ["--queries", "q.tsv", "--src", "fr", "--tgt", "ca", "--out",
                              "empty"], 1,
     r"empty is a folder, not a file to write; name a file \(pass another --out\)"),
    ("rerank_mt5.py", ["--run", "run.res", "--dataset", "irds:mmarco/v2/fr", "--queries", "q.tsv",
                       "--out", "empty"], 1, r"empty is a folder, not a file to write"),
    ("evaluate.py", ["twice.res", "--qrels", "irds:mmarco/v2/fr/dev/small"], 1,
     r"twice.res:2: qid 101 docno 2 again \(first on line 1\); a run ranks a document once"),
    ("evaluate.py", ["nan.res", "--qrels", "irds:mmarco/v2/fr/dev/small"], 1,
     r"nan.res:1: score nan is not a finite number"),
    ("finetune_bgem3.py", ["--train", "pos_string.jsonl"], 1,
     r'pos_string.jsonl:1: "pos" is "a string", not a list of strings'),
    ("finetune_bgem3.py", ["--train", "good.jsonl"], 1,
     r"cannot load model BAAI/bge-m3: not in the local Hugging Face cache"),
    ("finetune_mt5.py", ["--train", "good.jsonl", "--triples", "latin1.tsv"], 1,
     r"latin1.tsv:1: not UTF-8 \(byte 0xe9 at byte offset 3 of the file"),
]


INPUTS = {
    "baddocs/docs.tsv": "d1\tfine\nd2 no tab\n",
    "bad.tsv": "101\tQui produeix la mel?\n102 Quan?\n999\tDesconeguda\n",
    "q.tsv": "101\tQui produeix la mel?\n",
    "scn.tsv": "1\tunu\n",
    "run.res": "101 Q0 2 0 1.5 run\n",
    "bad.res": "101 Q0\n",
    "good.jsonl": '{"query": "q", "pos": ["p"], "neg": ["n"]}\n',
    "noneg.jsonl": '{"query": "q", "pos": ["p"], "neg": ["n"]}\n{"query": "q", "pos": ["p"], "neg": []}\n',
    "bad.jsonl": '{"query": "q", "pos": ["p"], "neg": ["n"]}\n{"query": "q", "positive": ["p"]}\n',
    "unknown_key.toml": "[index_bm25]\nworker = 2\n",
    "wrong_type.toml": '[run_mmarco]\nnum_results = "five"\n',
    "bad_pair.toml": '[pairs.gl-pt]\ncolection = "x"\n',
    "no_pairs.toml": "[run_mmarco]\npairs = []\n",
    "latin1.toml": b"[run_mmarco]\n# caf\xe9\nnum_results = 10\n",
    "afile": "",
    "twice.res": "101 Q0 2 1 1.5 run\n101 Q0 2 2 1.0 run\n",
    "nan.res": "101 Q0 2 1 nan run\n",
    "pos_string.jsonl": '{"query": "q", "pos": "a string", "neg": ["n"]}\n',
    "latin1.tsv": b"caf\xe9\tp\tn\n",
    "data/translations/mmarco-v2-fr-dev-small.ca.tsv": "".join(
        f"{q}\t{t}\n" for q, t in CA_DEV_QUERIES.items()),
}


def case_id(case):
    return f"{case[0]}:{' '.join(case[1])}"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, irds_home):
    """One experiment folder with the broken inputs, shared by every case (none may write)."""
    folder = tmp_path_factory.mktemp("user-errors")
    (folder / "empty").mkdir()
    for name, text in INPUTS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return folder


@pytest.fixture(scope="module")
def outcomes(experiment):
    """Every case run at once, a few at a time (each is a fresh interpreter, mostly imports)."""
    def run(case):
        script, args, _, _ = case
        return run_script(script, *args, "-q", cwd=experiment, check=False, env=NO_NETWORK)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        outcomes = dict(zip(map(case_id, CASES), pool.map(run, CASES)))
    assert len(outcomes) == len(CASES)  # every case has its own id
    return outcomes


def test_there_are_enough_cases_over_every_script():
    scripts = {case[0] for case in CASES}
    assert len(CASES) >= 25 and scripts == {p.name for p in REPO.glob("*.py")}


@pytest.mark.parametrize("script, args, status, message", CASES, ids=map(case_id, CASES))
def test_a_user_error_is_one_line(outcomes, script, args, status, message):
    proc = outcomes[case_id((script, args, status, message))]
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{script}: "), lines[0]
    assert re.search(message, lines[0]), lines[0]
    assert proc.returncode == status, (proc.returncode, lines[0])


def test_no_case_wrote_anything(experiment, outcomes):
    # Files only: the cases run concurrently in one folder, and two failed index builds racing
    # over the same parent folder may leave it behind empty (each removes only what it made).
    files = {str(p.relative_to(experiment)) for p in experiment.rglob("*") if p.is_file()}
    assert files == set(INPUTS)  # no runs, indexes, models or half-written files appeared
