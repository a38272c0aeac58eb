"""The follow-up's tables: native vs romanised queries ("Lost in Transliteration", Chari,
MacAvaney, Ounis, SIGIR 2025), as cells of crossvariety.report.paper's experiments
(translit-mmarco-{ru,zh,zh-anserini}, translit-neuclir-{ru,zh}).
"""
from ..data.datasets import dataset_name
from ..runs import run_path
from . import evaluation
from .cells import Cell

# language -> (dev topics, native query set, romanised query set, registry suffix of its models)
TRANSLIT_MMARCO = {
    "ru": ("irds:mmarco/v2/ru/dev/small", "rus_Cyrl", "rus_Latn", ""),
    "zh": ("irds:mmarco/v2/zh/dev/small", "zho_Hans", "zho_Latn", ""),
    # Chinese cut into Anserini's CJK bigrams before romanising: the _ANSERINI models, and the
    # romanised query set labelled apart (its pair in configs/translit_mmarco_zh-anserini_*.toml)
    "zh-anserini": ("irds:mmarco/v2/zh/dev/small", "zho_Hans", "zho_Latn-anserini", "-anserini"),
}
MIXTURES = ["native", "translit", "mixed"]  # the training queries: NATIVE, TRANSLIT, 50_MIXED
# neuCLIR 1 (documents' language): its TREC 2022 and 2023 topics, pooled; human-translated
# titles (ht_title), native and romanised (run_neuclir.py --romanize-queries: ht_title-uroman)
TRANSLIT_NEUCLIR = {"ru": ("ru", [""]), "zh": ("zh", ["", "-anserini"])}
TRANSLIT_QUERY_FIELD = "ht_title"


def translit_model(system, language, mixture, suffix=""):
    """The registry name of the follow-up's model: bge-m3-ru-translit, mt5-zh-mixed-anserini."""
    return f"{system}-{language}-{mixture}{suffix}"


def _script_cells(experiment, topics_of, query_sets, blocks):
    """Cells of a follow-up table. ``blocks``: [(k, rows)], rows [(model label, published
    model, run_of(topics, queries) -> run name)]; k None: the first row is the block's
    original, else block k's original is (its rows are all fine-tuned). Each query set
    [(script, queries)] is a column; each fine-tuned model is tested against its block's
    original on the same queries; every test of the table is corrected together (one group)."""
    cells, originals = [], []  # originals[block] = index of its original's first cell
    for k, rows in blocks:
        originals.append(len(cells) if k is None else originals[k])
        for i, (label, model, run_of) in enumerate(rows):
            original = k is None and i == 0
            for j, (script, queries) in enumerate(query_sets):
                topics, pool = topics_of(queries, run_of)
                run = " + ".join(r for _, r in pool) if pool else run_of(topics, queries)
                cells.append(Cell({"model": label, "script": script}, topics, run, model,
                                  queries, "original" if original else "fine-tuned", experiment,
                                  None if original else originals[-1] + j, pool=pool))
    return cells


def translit_mmarco(language, rename=None):
    """One language's table: the original and the fine-tuned BGE-M3 (first stage), mT5
    re-ranking the original BGE-M3's top-1000, and each fine-tuned BGE-M3 >> the mT5 fine-tuned
    on the same queries (tested against the original BGE-M3 >> mT5); native vs romanised
    dev/small queries."""
    topics, native, romanised, suffix = TRANSLIT_MMARCO[language]
    lang = language.split("-")[0]
    name = dataset_name(topics)
    rename = rename or {}

    def first_stage(model):
        return lambda t, q: run_path("", name, rename.get(model, model), q, "retrieve").name

    def reranked(first, model):
        return lambda t, q: run_path("", name, rename.get(first, first), q,
                                     f"rerank-{rename.get(model, model)}").name
    tuned = [(translit_model("bge-m3", lang, m, suffix), translit_model("mt5", lang, m, suffix))
             for m in MIXTURES]
    blocks = [
        (None, [("bge-m3", "bge-m3", first_stage("bge-m3"))] +
         [(b, b, first_stage(b)) for b, _ in tuned]),
        (None, [("bge-m3 >> mt5", "mt5", reranked("bge-m3", "mt5"))] +
         [(f"bge-m3 >> {t}", t, reranked("bge-m3", t)) for _, t in tuned]),
        (1, [(f"{b} >> {t}", f"{b} >> {t}", reranked(b, t)) for b, t in tuned]),
    ]
    return _script_cells(f"translit-mmarco-{language}", lambda q, run_of: (topics, ()),
                         [("native", native), ("romanised", romanised)], blocks)


def translit_neuclir(language, rename=None):
    """neuCLIR 1 in one language, TREC 2022 and 2023 topics pooled (the follow-up's single
    topic set), human-translated titles: the original and fine-tuned BGE-M3, and mT5
    re-ranking the original BGE-M3's top-1000."""
    lang, suffixes = TRANSLIT_NEUCLIR[language]
    topic_sets = [f"irds:neuclir/1/{lang}/trec-{year}" for year in (2022, 2023)]
    rename = rename or {}

    def topics_of(queries, run_of):
        return (evaluation.pool_spec(topic_sets),
                tuple((t, run_of(t, queries)) for t in topic_sets))

    def first_stage(model):
        return lambda t, q: run_path("", dataset_name(t), rename.get(model, model), q,
                                     "retrieve").name

    def reranked(model):
        return lambda t, q: run_path("", dataset_name(t), rename.get("bge-m3", "bge-m3"), q,
                                     f"rerank-{rename.get(model, model)}").name
    models = {system: [translit_model(system, lang, m, s) for s in suffixes for m in MIXTURES]
              for system in ("bge-m3", "mt5")}
    blocks = [(None, [("bge-m3", "bge-m3", first_stage("bge-m3"))] +
               [(b, b, first_stage(b)) for b in models["bge-m3"]]),
              (None, [("bge-m3 >> mt5", "mt5", reranked("mt5"))] +
               [(f"bge-m3 >> {t}", t, reranked(t)) for t in models["mt5"]])]
    return _script_cells(f"translit-neuclir-{language}", topics_of,
                         [("native", TRANSLIT_QUERY_FIELD),
                          ("romanised", f"{TRANSLIT_QUERY_FIELD}-uroman")], blocks)


def is_script_table(cells):
    """A follow-up table: native vs romanised queries as columns."""
    return bool(cells) and all("script" in c.labels for c in cells)
