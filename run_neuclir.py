"""Cross-language-family transfer: neuMARCO and neuCLIR, original vs fine-tuned BGE-M3 / ColBERT-XM.

English queries, documents in Persian, Russian or Chinese: does a model fine-tuned on a variety
pair (ca-fr, af-dt) lose or gain on languages of other families? For each dataset, each model in
--models retrieves over its own index of the collection (built on first use, as index_bgem3.py
or index_colbertxm.py would), and the first model is the baseline of the significance tests.
ColBERT-XM encodes queries and documents with the adapter of the documents' language (fa_IR
for English topics over Persian news). With --rerank, the first
model's top-k is re-ranked by each mT5 model given (the paper's mT5 rows), and the first
re-ranker is the baseline. Run files:
  {runs_dir}/{dataset}.{model}.q-{field}.retrieve.res.gz
  {runs_dir}/{dataset}.{first model}.q-{field}.rerank-{reranker}.res.gz
(q-{field}-uroman with --romanize-queries: the follow-up's romanised queries).
Metrics: nDCG@20 and R@1000 on neuCLIR (graded qrels), MRR@10 and R@1000 on neuMARCO.
Beside each run, {run}.json records what made it (model files or revision, collection, queries,
settings); a finished run is reused only when its record matches, else recomputed with a log
line naming what changed.

Examples:
  python run_neuclir.py --config configs/neuclir_bgem3.toml
  python run_neuclir.py --datasets irds:neuclir/1/fa/trec-2022 --models bge-m3 bge-m3-lt-cafr
  python run_neuclir.py --datasets irds:neuclir/1/zh/trec-2023 --query-field ht_title
  python run_neuclir.py --datasets irds:neumarco/ru/dev/small --rerank mt5 mt5-lt-cafr
  python run_neuclir.py --config configs/neuclir_colbertxm.toml
  python run_neuclir.py --config configs/translit_neuclir_ru_bgem3.toml   # 2022+2023 pooled
  python run_neuclir.py --config configs/translit_neuclir_ru_bgem3_romanised.toml
"""
from crossvariety import settings

# -----------------------------------------------------------------------------
DATASETS = ["irds:neumarco/fa/dev/small", "irds:neumarco/ru/dev/small",
            "irds:neumarco/zh/dev/small"]  # topic sets with qrels:
                                           # irds:neumarco/{fa,ru,zh}/dev/small,
                                           # irds:neuclir/1/{fa,ru,zh}/trec-2022 or trec-2023, or
                                           # dataset folders
MODELS = ["bge-m3", "bge-m3-lt-cafr", "bge-m3-lt-afdt"]  # first-stage models: BGE-M3 (bge-m3,
                                                         # bge-m3-lt-cafr, bge-m3-lt-afdt) or
                                                         # ColBERT-XM (colbert-xm,
                                                         # colbert-xm-lt-cafr, colbert-xm-lt-afdt),
                                                         # HF ids or paths; the first is the
                                                         # baseline of the significance tests
QUERY_FIELD = "title"  # neuCLIR query field: title (English) or ht_title (human translation into
                       # the documents' language); neuMARCO queries have one field
ROMANIZE_QUERIES = False  # the follow-up's romanised queries: the query field written in Latin
                          # letters by uroman (no language rules, as the authors' files; cached in
                          # {data_dir}/translation-cache.sqlite); query set {field}-uroman
RERANK = []  # mT5 models (mt5, mt5-lt-cafr, mt5-lt-afdt, HF ids or paths) that re-rank the first
             # model's runs; the table then compares the re-rankers
RERANK_TOP_K = 1000  # documents of each ranking that --rerank re-ranks
TOKENIZER = ""  # tokenizer of the --rerank models (HF id or path); empty = each model's own, else
                # that of the model it was fine-tuned from (unicamp-dl/mt5-base-mmarco-v2: the
                # paper's mt5-lt-* checkpoints ship none)
NUM_RESULTS = 1000  # documents retrieved per query
MAX_LENGTH = 1024  # BGE-M3: tokens per document (and per query); an index built with another length
                   # is an error (--overwrite rebuilds it)
LANGUAGE = ""  # ColBERT-XM: the adapter for queries and documents (fa, ru, zh, fa_IR); empty = the
               # documents' language as ir_datasets records it (needed for folders)
DOC_LANG_FROM_CONFIG = False  # ColBERT-XM: encode documents with the checkpoint's saved
                              # default_language, as the original code did by accident; runs named
                              # {model}-doclang-config
MEASURES = []  # ir_measures measures; empty = nDCG@20 R@1000 (neuCLIR), MRR@10 R@1000 (neuMARCO)
POOL = False  # evaluate the datasets' topic sets as one (the follow-up's 2022+2023): the topic sets
              # of each collection pooled into one table (qids prefixed trec-2022/, trec-2023/ so
              # that ids of different years never mix); runs stay one file per topic set
CORRECTION = "bonferroni"  # correction of the paired t-tests: bonferroni holm holm-sidak fdr_bh
                           # none
DTYPE = "auto"  # precision of the encoders and re-rankers: auto = bf16 on a GPU, fp32 on a CPU;
                # fp32 (the paper's); fp8 (matmuls on fp8 tensor cores, emulated elsewhere);
                # recorded in the run files
OVERWRITE = False  # recompute the run files even if they exist and match, and rebuild an index that
                   # was built from other model files or another collection (without it such an
                   # index is an error; a current index is kept)
paths = settings.configure(globals())
# -----------------------------------------------------------------------------
import logging

from crossvariety import experiments, rerank
from crossvariety.data import translation
from crossvariety.data.datasets import Dataset
from crossvariety.errors import UsageError
from crossvariety.families import family_of, first_stage_names
from crossvariety.models import model_label, resolve_model
from crossvariety.neural import precision
from crossvariety.report import evaluation
from crossvariety.runs import cached_run, check_writable, run_path, write_text

log = logging.getLogger("run_neuclir")
if not MODELS:
    raise UsageError("--models needs at least one model")
for model in MODELS + RERANK + ([TOKENIZER] if TOKENIZER else []):
    if model not in first_stage_names():
        resolve_model(model)  # an unknown name fails before any work
families = {model: family_of(model) for model in MODELS}  # an mT5 model here fails
rerankers = {model: rerank.family_of(model) for model in RERANK}
evaluation.parse_measures(MEASURES)
check_writable(paths["runs_dir"], folder=True, option="--runs-dir")  # before, not after, the work
datasets = [Dataset(d) for d in DATASETS]
precision.check(DTYPE)  # torch is loaded only when a model runs
s = experiments.settings_of(globals())
s["dtype"] = precision.resolve(DTYPE)  # the precision of the models, recorded in the runs


def evaluate_table(name, label, runs, qrels, measures):
    """Every model against the first, on one topic set (or one pool of them)."""
    table, _, problems = evaluation.evaluate(runs, qrels, measures, baseline=0,
                                             correction=CORRECTION)
    for problem in problems:
        log.warning(problem)
    table.index = [f"{name} {model}" for model in table.index]
    table.index.name = f"q-{label}"
    return table


# --pool: the topic sets of one collection are evaluated as one; a set alone is evaluated as
# soon as its runs are made (a pool's runs are held until its last set's are)
group_of = {d.spec: d.collection().spec if POOL else d.spec for d in datasets}
group_size = {g: list(group_of.values()).count(g) for g in group_of.values()}
tables = []
evaluated = []  # (topics, collection spec, query label, runs, qrels) of each pooled topic set
for topics in datasets:
    collection = topics.collection()
    is_neuclir = "neuclir" in topics.spec
    field = QUERY_FIELD if is_neuclir else None
    queries = topics.queries(field)
    if ROMANIZE_QUERIES:  # cached by content: a second run romanises nothing
        lang = LANGUAGE or collection.docs_lang()
        queries = translation.translate_queries(
            queries, lang, lang, "uroman", cache_path=paths["data_dir"] / "translation-cache.sqlite")
    label = experiments.neuclir_queries(topics.spec, QUERY_FIELD, ROMANIZE_QUERIES)
    log.info("%s: %d queries (%s), documents from %s", topics.spec, len(queries), label,
             collection.spec)
    qrels = topics.qrels()  # a broken qrels file fails before the runs

    # 1. each model retrieves over its own index of the collection
    cs = experiments.collection_settings(s, LANGUAGE, LANGUAGE or collection.docs_lang() or "")
    runs = {}
    for model, family in families.items():
        name = experiments.first_stage(cs, model)
        path = run_path(paths["runs_dir"], topics.name, name, label, experiments.stage())

        def retrieve(model=model, family=family):
            return family.retriever(model, collection, paths["index_dir"], cs)(queries)

        def recipe(model=model, family=family):
            return family.recipe(model, collection, queries, paths["index_dir"], cs)
        runs[name] = cached_run(path, retrieve, OVERWRITE, s["dtype"] if family.NEURAL else None,
                                recipe, NUM_RESULTS, family.exact_depth(model),
                                optional=("index",))

    # 2. the paper's mT5 rows: the first model's top-k re-ranked by each re-ranker
    if RERANK:
        first_label = experiments.first_stage(cs, MODELS[0])
        first = runs[first_label]
        reranked = {}
        for reranker_name, reranker in rerankers.items():
            path = run_path(paths["runs_dir"], topics.name, first_label, label,
                            experiments.stage(reranker_name))

            def rerank_run(reranker_name=reranker_name, reranker=reranker):
                return reranker.rerank(reranker_name, first, queries, collection, s)

            def recipe(reranker_name=reranker_name, reranker=reranker):
                return reranker.recipe(reranker_name, first, queries, collection, s)
            reranked[f"{first_label} >> {model_label(reranker_name)}"] = \
                cached_run(path, rerank_run, OVERWRITE, s["dtype"], recipe)
        runs = reranked

    if group_size[group_of[topics.spec]] == 1:
        tables.append(evaluate_table(topics.name, label, runs, qrels,
                                     MEASURES or evaluation.default_measures(topics.spec)))
    else:
        evaluated.append((topics, group_of[topics.spec], label, runs, qrels))


# 3. --pool: every model against the first on each collection's pooled topic sets
groups = {}
for item in evaluated:
    groups.setdefault(item[1], []).append(item)
for members in groups.values():
    measures = MEASURES or evaluation.default_measures(members[0][0].spec)
    specs = [m[0].spec for m in members]
    prefixes = evaluation.pool_labels(specs)
    pooled_runs = {model: evaluation.pool_frames([(prefix, m[3][model])
                                                  for prefix, m in zip(prefixes, members)])
                   for model in members[0][3]}
    pooled_qrels = evaluation.pool_frames([(prefix, m[4]) for prefix, m in zip(prefixes, members)])
    log.info("pooled %s: %d judged queries", evaluation.pool_spec(specs),
             pooled_qrels.qid.nunique())
    tables.append(evaluate_table("+".join([members[0][0].name] + prefixes[1:]), members[0][2],
                                 pooled_runs, pooled_qrels, measures))

for table in tables:
    print(evaluation.format_table(table))
stage = "rerank" if RERANK else "retrieve"
queries_label = QUERY_FIELD + ("-uroman" if ROMANIZE_QUERIES else "")
out = paths["runs_dir"] / f"neuclir.{stage}.q-{queries_label}.tables.md"
write_text(out, "\n".join(evaluation.format_table(t) for t in tables))
log.info("wrote %s († = differs from the first model, corrected p < 0.05)", out)
