"""The follow-up's tables ("Lost in Transliteration", SIGIR 2025): pooled neuCLIR topic sets
(2022 + 2023 as one, colliding qids kept apart), native vs romanised tables with the published
Russian values on the right rows, the plan's configs, the FLORES script gap."""
import gzip
import io
import math
import tarfile

import pandas as pd
import pytest

from conftest import NEUCLIR_QRELS, REPO, run_script, write_neuclir_topics
from crossvariety import experiments, settings
from crossvariety.report import evaluation, figures, followup, paper
from crossvariety.report.cells import Cell, run_names
from crossvariety.runs import write_run

# neuCLIR Persian trec-2023 on the same toy documents, with the SAME topic ids as trec-2022
# (301, 302) but other judgements: a pool that did not keep the years apart would mix them.
QRELS_2023 = [("301", "f0", 3), ("301", "f1", 0), ("302", "f3", 1)]
RUNS = {  # (year, model): {qid: docnos, best first}
    (2022, "bge-m3"): {"301": ["f4", "f1"], "302": ["f0", "f2"]},
    (2023, "bge-m3"): {"301": ["f1", "f0"], "302": ["f3"]},
    (2022, "bge-m3-ru-translit"): {"301": ["f1"], "302": ["f2", "f0"]},
    (2023, "bge-m3-ru-translit"): {"301": ["f0"], "302": ["f2", "f4", "f3"]},
}


def ndcg(ranking, judgements, k=20):
    dcg = sum(judgements.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted(judgements.values(), reverse=True)[:k]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


def frame(rankings):
    return pd.DataFrame([(q, d, i, 10.0 - i) for q, ds in rankings.items()
                         for i, d in enumerate(ds)], columns=["qid", "docno", "rank", "score"])


@pytest.fixture(scope="module")
def neuclir_2023(irds_home):
    """irds:neuclir/1/fa/trec-2023: topics with the 2022 ids, qrels in the release's tarball."""
    topics = irds_home / "neuclir" / "trec-2023"
    topics.mkdir(parents=True, exist_ok=True)
    write_neuclir_topics(topics)
    data = "".join(f"{q} 0 {d} {r}\n" for q, d, r in QRELS_2023).encode()
    with tarfile.open(topics / "qrels.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("qrels.final.gains.fas")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return irds_home


def test_pool_keeps_colliding_qids_apart():
    labels = evaluation.pool_labels(["irds:neuclir/1/fa/trec-2022", "irds:neuclir/1/fa/trec-2023"])
    assert labels == ["trec-2022", "trec-2023"]
    assert evaluation.pool_spec(["irds:neuclir/1/fa/trec-2022", "irds:neuclir/1/fa/trec-2023"]) \
        == "irds:neuclir/1/fa/trec-2022+trec-2023"
    assert evaluation.pool_labels(["a/x/t", "b/y/t"]) == ["a/x/t", "b/y/t"]  # same last part
    with pytest.raises(Exception, match="twice"):
        evaluation.pool_labels(["a/t", "a/t"])
    qrels = evaluation.pool_frames([
        ("trec-2022", pd.DataFrame(NEUCLIR_QRELS, columns=["qid", "docno", "label"])),
        ("trec-2023", pd.DataFrame(QRELS_2023, columns=["qid", "docno", "label"]))])
    assert sorted(qrels.qid.unique()) == ["trec-2022/301", "trec-2022/302", "trec-2023/301",
                                          "trec-2023/302"]
    assert len(qrels) == len(NEUCLIR_QRELS) + len(QRELS_2023)


def test_pooled_cells_equal_the_concatenation_by_hand(tmp_path, neuclir_2023):
    """A pooled cell = the two years' runs and qrels concatenated (qids apart), evaluated as
    one topic set: 4 queries, nDCG@20 by hand; the fine-tuned model's p-value is the paired
    t-test over those 4 queries."""
    topic_sets = ["irds:neuclir/1/fa/trec-2022", "irds:neuclir/1/fa/trec-2023"]
    judged = {2022: {}, 2023: {}}
    for year, rows in ((2022, NEUCLIR_QRELS), (2023, QRELS_2023)):
        for q, d, r in rows:
            judged[year].setdefault(q, {})[d] = r
    cells = []
    for model in ("bge-m3", "bge-m3-ru-translit"):
        pool = []
        for year, topics in zip((2022, 2023), topic_sets):
            name = f"neuclir-1-fa-trec-{year}.{model}.q-ht_title.retrieve.res.gz"
            write_run(frame(RUNS[year, model]), tmp_path / name)
            pool.append((topics, name))
        cells.append(Cell({"model": model, "script": "native"},
                                evaluation.pool_spec(topic_sets), " + ".join(r for _, r in pool),
                                model, "ht_title", "fine-tuned" if cells else "original", "t",
                                0 if cells else None, pool=tuple(pool)))
    problems = paper.evaluate_cells(cells, lambda n: tmp_path / n if (tmp_path / n).is_file()
                                    else None, lambda topics: ["nDCG@20", "R@1000"])
    by_hand = {model: [ndcg(RUNS[year, model][q], judged[year][q])
                       for year in (2022, 2023) for q in ("301", "302")]
               for model in ("bge-m3", "bge-m3-ru-translit")}
    for cell in cells:
        assert cell.values["nDCG@20"][0] == pytest.approx(sum(by_hand[cell.model]) / 4)
    from scipy import stats
    assert cells[1].values["nDCG@20"][1] == pytest.approx(
        stats.ttest_rel(by_hand["bge-m3-ru-translit"], by_hand["bge-m3"]).pvalue)
    # the same as evaluating the concatenated topics and qrels directly
    runs = {m: evaluation.pool_frames([(f"trec-{y}", frame(RUNS[y, m])) for y in (2022, 2023)])
            for m in ("bge-m3", "bge-m3-ru-translit")}
    qrels = evaluation.pool_frames([
        ("trec-2022", pd.DataFrame(NEUCLIR_QRELS, columns=["qid", "docno", "label"])),
        ("trec-2023", pd.DataFrame(QRELS_2023, columns=["qid", "docno", "label"]))])
    table, _, _ = evaluation.evaluate(runs, qrels, ["nDCG@20"])
    assert table["queries"].tolist() == [4, 4]
    assert table["nDCG@20"].tolist() == pytest.approx([c.values["nDCG@20"][0] for c in cells])
    # without the prefixes the years' 301s would be one query: a different (wrong) value
    naive = evaluation.per_query(pd.concat([frame(RUNS[y, "bge-m3"]) for y in (2022, 2023)]),
                                 pd.DataFrame(NEUCLIR_QRELS + QRELS_2023,
                                              columns=["qid", "docno", "label"]), ["nDCG@20"])
    assert len(naive) == 2 and naive["nDCG@20"].mean() != pytest.approx(cells[0].values["nDCG@20"][0])
    assert not [p for p in problems if "missing" in p]


def test_a_pool_with_a_missing_year_is_not_evaluated(tmp_path, neuclir_2023):
    cells = followup.translit_neuclir("ru")
    name = cells[0].pool[0][1]
    write_run(frame(RUNS[2022, "bge-m3"]), tmp_path / name)
    problems = paper.evaluate_cells(cells[:1], lambda n: tmp_path / n if (tmp_path / n).is_file()
                                    else None, lambda topics: ["nDCG@20"])
    assert not cells[0].values and "1 of its 2 runs are missing" in problems[0]


# -- the mMARCO tables -------------------------------------------------------------------------

RU_TOPICS = "irds:mmarco/v2/ru/dev/small"


def test_translit_mmarco_cells_names_baselines_and_published_rows():
    cells = paper.experiments(["translit-mmarco"])
    assert list(cells) == ["translit-mmarco-ru", "translit-mmarco-zh", "translit-mmarco-zh-anserini"]
    ru = cells["translit-mmarco-ru"]
    assert len(ru) == 2 * (4 + 4 + 3)
    rows = {(c.labels["model"], c.labels["script"]): c for c in ru}
    original = rows["bge-m3", "romanised"]
    assert original.run == "mmarco-v2-ru-dev-small.bge-m3.q-rus_Latn.retrieve.res.gz"
    tuned = rows["bge-m3-ru-translit", "romanised"]
    assert ru[tuned.baseline] is original and tuned.group == original.group
    rerank = rows["bge-m3 >> mt5-ru-mixed", "native"]
    assert rerank.run == "mmarco-v2-ru-dev-small.bge-m3.q-rus_Cyrl.rerank-mt5-ru-mixed.res.gz"
    assert ru[rerank.baseline].labels["model"] == "bge-m3 >> mt5"
    both = rows["bge-m3-ru-mixed >> mt5-ru-mixed", "romanised"]
    assert both.run == "mmarco-v2-ru-dev-small.bge-m3-ru-mixed.q-rus_Latn.rerank-mt5-ru-mixed.res.gz"
    assert ru[both.baseline] is rows["bge-m3 >> mt5", "romanised"]
    # the published Russian values: romanised queries, BGE-M3 >> mT5 (both fine-tuned)
    assert paper.published_value(rows["bge-m3 >> mt5", "romanised"], "MRR@10") == 0.1948
    assert paper.published_value(both, "R@1000") == 0.8895
    assert paper.published_value(rows["bge-m3-ru-translit >> mt5-ru-translit", "romanised"],
                                 "MRR@10") == 0.2522
    assert paper.published_value(rows["bge-m3-ru-native >> mt5-ru-native", "romanised"],
                                 "R@1000") == 0.5925
    assert paper.published_value(rows["bge-m3 >> mt5-ru-mixed", "romanised"], "MRR@10") is None
    assert paper.published_value(rows["bge-m3 >> mt5", "native"], "MRR@10") is None
    # the first paper's values are still found
    assert paper.published()["irds:mmarco/v2/dt/dev/small", "af", "mt5-lt-afdt", "MRR@10"] == 0.2815
    anserini = {c.queries for c in cells["translit-mmarco-zh-anserini"]}
    assert anserini == {"zho_Hans", "zho_Latn-anserini"}


def test_every_follow_up_run_is_made_by_a_config():
    """The configs write exactly the run files the follow-up's tables read (same names), so
    that make_tables.py --plan has a command for each; mmarco's "all" pairs do not pick up
    other configs' pairs."""
    made = {}
    configs = sorted(REPO.glob("configs/translit_*.toml"))
    assert len(configs) == 41  # 33 mMARCO, 8 neuCLIR (native and romanised queries)
    settings.experiment_settings_many((str(c.relative_to(REPO)), "run_neuclir" if "neuclir" in
                                       c.name else "run_mmarco") for c in configs)  # at once
    for config in configs:
        for output in experiments.config_outputs(config.relative_to(REPO)):
            made.setdefault(output.path.name, output)
    needed = [run for cells in paper.experiments(["translit-mmarco", "translit-neuclir"]).values()
              for cell in cells for run in run_names(cell)]
    assert set(needed) <= set(made), sorted(set(needed) - set(made))[:5]
    assert all(made[r].topics.startswith(("irds:mmarco/v2/", "irds:neuclir/1/")) for r in needed)
    assert not any("rus_" in o.path.name for o in
                   experiments.config_outputs("configs/mmarco_bge-m3.toml"))


RANKS = {  # (run stem, queries): rank of the judged passage of each ru dev/small query
    ("bge-m3", "rus_Cyrl"): [1, 1, 2, 1],
    ("bge-m3", "rus_Latn"): [3, None, 5, 2],
    ("bge-m3-ru-translit", "rus_Cyrl"): [1, 2, 1, 1],
    ("bge-m3-ru-translit", "rus_Latn"): [1, 1, 2, 1],
    ("bge-m3.rerank-mt5", "rus_Latn"): [2, 4, None, 1],
    ("bge-m3-ru-translit.rerank-mt5-ru-translit", "rus_Latn"): [1, 2, 1, 1],
}
QRELS = [("101", "2"), ("102", "1"), ("103", "3"), ("104", "9")]


def write_ru_runs(folder):
    """Runs named as configs/translit_mmarco_ru_*.toml write them, over the toy mMARCO (the
    Russian ids served from the French fixture files)."""
    for (stem, queries), ranks in RANKS.items():
        model, _, stage = stem.partition(".")
        rows = []
        for (qid, relevant), rank in zip(QRELS, ranks):
            ranking = [d for d in map(str, range(10)) if d != relevant][:5]
            if rank:
                ranking.insert(rank - 1, relevant)
            rows += [(qid, d, i, 10.0 - i) for i, d in enumerate(ranking)]
        write_run(pd.DataFrame(rows, columns=["qid", "docno", "rank", "score"]),
                  folder / f"mmarco-v2-ru-dev-small.{model}.q-{queries}.{stage or 'retrieve'}.res.gz")


@pytest.fixture
def ru_fixture(tmp_path, irds_home):
    """mMARCO v2 Russian dev/small served from copies of the French fixture files."""
    v2 = irds_home / "mmarco" / "v2"
    for kind in ("collection.tsv", "queries.dev.tsv"):
        source = v2 / f"french_{kind}" if kind == "collection.tsv" else v2 / f"french.{kind}"
        target = v2 / f"russian_{kind}" if kind == "collection.tsv" else v2 / f"russian.{kind}"
        if not target.exists():
            target.write_bytes(source.read_bytes())
    folder = tmp_path / "runs" / "translit"
    write_ru_runs(folder)
    return tmp_path


def rr(ranks):
    return sum(1 / r if r and r <= 10 else 0 for r in ranks) / len(ranks)


def test_make_tables_renders_the_follow_up_tables(ru_fixture):
    configs = sorted(REPO.glob("configs/translit_mmarco_ru_*.toml"))  # not every config: faster
    proc = run_script("make_tables.py", "--experiments", "translit-mmarco-ru", "--configs",
                      *configs, cwd=ru_fixture)
    out = proc.stdout
    assert "## translit-mmarco-ru (16 of 22 rows have no run yet" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("| model |"))
    assert header == ("| model | MRR@10 native | MRR@10 romanised | paper | "
                      "R@1000 native | R@1000 romanised | paper |")
    row = next(line for line in lines if line.startswith("| bge-m3 |"))
    assert row.startswith(f"| bge-m3 | {rr(RANKS['bge-m3', 'rus_Cyrl']):.4f} | "
                          f"{rr(RANKS['bge-m3', 'rus_Latn']):.4f} |  |")
    baseline = next(line for line in lines if line.startswith("| bge-m3 >> mt5 |"))
    assert f"| – | {rr(RANKS['bge-m3.rerank-mt5', 'rus_Latn']):.4f} | 0.1948 |" in baseline
    assert "| 0.6589 |" in baseline
    both = next(line for line in lines if line.startswith(
        "| bge-m3-ru-translit >> mt5-ru-translit |"))
    assert f"| {rr(RANKS['bge-m3-ru-translit.rerank-mt5-ru-translit', 'rus_Latn']):.4f} | 0.2522 |" \
        in both and "| 0.8963 |" in both
    assert "| bge-m3-ru-native >> mt5-ru-native | – | – | 0.1192 |" in out
    assert "Bonferroni-corrected" in out
    tables = ru_fixture / "runs" / "tables"
    csv = pd.read_csv(tables / "translit-mmarco-ru.table.csv")
    assert set(csv["script"]) == {"native", "romanised"} and "MRR@10 paper" in csv
    assert csv.loc[csv["MRR@10 paper"].notna(), "model"].nunique() == 4
    for name in ("translit-mmarco-ru.table.md", "translit-mmarco-ru.table.tex",
                 "translit-mmarco-ru.MRR@10.png", "translit-mmarco-ru.R@1000.pdf"):
        assert (tables / name).is_file(), name


def test_script_chart_holds_native_and_romanised_per_model(ru_fixture):
    cells = followup.translit_mmarco("ru")
    folder = ru_fixture / "runs" / "translit"
    paper.evaluate_cells(cells, lambda n: folder / n if (folder / n).is_file() else None,
                         lambda topics: ["MRR@10"])
    fig = figures.script_chart(cells, "MRR@10", "t")
    ax = fig.axes[0]
    labels = [c.get_label() for c in ax.collections]
    assert "ours: native-script queries" in labels and "paper: romanised queries" in labels
    ours = next(c for c in ax.collections if c.get_label() == "ours: romanised queries")
    assert sorted(ours.get_offsets()[:, 1]) == pytest.approx(sorted(
        rr(r) for (stem, q), r in RANKS.items() if q == "rus_Latn"))
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["bge-m3", "bge-m3-ru-native"]


def test_flores_script_gap_config_reads_two_configs():
    """The FLORES script gap: the words and bridged rows in one config, the 4-grams in a
    second (ngram is a run's setting, not a pair's); both name their romanised queries."""
    for name, label in (("flores_script_gap", "bm25"), ("flores_script_gap_ngram", "bm25-char4")):
        outputs = experiments.config_outputs(f"configs/{name}.toml")
        names = {o.path.name for o in outputs}
        assert f"flores200-devtest-rus_Cyrl.{label}.q-rus_Latn.retrieve.res.gz" in names
        assert f"flores200-devtest-zho_Hans.{label}-uroman.q-zho_Latn.retrieve.res.gz" in names \
            or any("uroman" in n and "zho_Latn" in n for n in names)
        assert len(names) == 8


def test_flores_romanises_a_latin_variety_it_lacks(tmp_path):
    """FLORES has no rus_Latn: the pair rus_Latn-rus_Cyrl's variety queries are the rus_Cyrl
    sentences romanised with uroman (the pair's own script preferred: zho_Hans, not zho_Hant)."""
    from crossvariety.data import flores, pairs
    from crossvariety.data.datasets import read_queries
    source = tmp_path / "flores"
    source.mkdir()
    sentences = {"rus_Cyrl": ["Щука и ёж.", "Что такое бюджет?"], "zho_Hans": ["一", "二"],
                 "zho_Hant": ["一", "二"]}
    for code, lines in sentences.items():
        (source / f"{code}.devtest.gz").write_bytes(gzip.compress("".join(
            s + "\n" for s in lines).encode()))
    (source / "metadata_devtest.tsv.gz").write_bytes(
        gzip.compress(b"URL\tdomain\nhttp://a\tw\nhttp://b\tw\n"))
    assert flores.flores_code(source, "rus_Latn") == "rus_Latn"
    assert flores.romanised_from(source, "rus_Latn") == "rus_Cyrl"
    assert flores.romanised_from(source, "zho_Latn", "zho_Hans") == "zho_Hans"
    assert flores.romanised_from(source, "rus_Cyrl") is None  # FLORES has it
    assert flores.flores_code(source, "srp_Latn") is None  # nothing to romanise
    pair = pairs.pair_from_name("rus_Latn-rus_Cyrl")
    _, variety_file = flores.build_flores(pair, source, ["rus_Cyrl", "rus_Latn"],
                                          tmp_path / "data", tmp_path / "tr")
    assert variety_file.name == "flores200-devtest-rus_Cyrl.rus_Latn.tsv.gz"
    # uroman without language rules, as docs/transliteration.md's table ("the paper's" column)
    assert list(read_queries(variety_file)["query"]) == ["Shchuka i ezh.", "Chto takoe byudzhet?"]


def test_run_neuclir_pools_the_years(workdir, neuclir_2023, lexical_xlmr, tiny_xlmr):
    """run_neuclir.py --pool: the runs stay one file per year; the table has one row per model
    over the 4 queries of both years (the same ids, kept apart), equal to the mean of each
    year's per-query scores computed separately, and the t-test pairs those 4 queries."""
    from conftest import read_table
    from crossvariety.data.datasets import Dataset
    from crossvariety.runs import read_run
    from scipy import stats
    datasets = ["irds:neuclir/1/fa/trec-2022", "irds:neuclir/1/fa/trec-2023"]
    proc = run_script("run_neuclir.py", "--datasets", *datasets, "--models", lexical_xlmr,
                      tiny_xlmr, "--query-field", "ht_title", "--pool", cwd=workdir)
    runs = workdir / "runs"
    scores = {}
    for model in (lexical_xlmr, tiny_xlmr):
        per_year = []
        for spec in datasets:
            run = runs / f"{Dataset(spec).name}.{model.name}.q-ht_title.retrieve.res.gz"
            per_year.append(evaluation.per_query(read_run(run), Dataset(spec).qrels().astype(
                {"qid": str, "docno": str}), ["nDCG@20"])["nDCG@20"])
        scores[model] = pd.concat(per_year).tolist()
    assert len(scores[lexical_xlmr]) == 4
    table = read_table(proc.stdout)
    row = table[f"neuclir-1-fa-trec-2022+trec-2023 {tiny_xlmr.name}"]
    assert float(row["queries"]) == 4
    assert float(row["nDCG@20"].rstrip("†")) == pytest.approx(sum(scores[tiny_xlmr]) / 4, abs=1e-4)
    p = stats.ttest_rel(scores[tiny_xlmr], scores[lexical_xlmr]).pvalue
    assert float(row["nDCG@20 p"]) == pytest.approx(1.0 if math.isnan(p) else p, rel=1e-2)
    assert not any(k.startswith("neuclir-1-fa-trec-2023 ") for k in table)  # no per-year rows


def test_run_neuclir_romanises_the_queries(workdir, lexical_xlmr):
    """run_neuclir.py --romanize-queries: the runs of query set ht_title-uroman are made from the
    topics' ht_title written by uroman as the authors did (no language rules), recorded as such
    in the run's record; the plan names them as the script does."""
    from crossvariety import provenance
    from crossvariety.data.datasets import Dataset
    from crossvariety.data.romanization import romanize
    topics = Dataset("irds:neuclir/1/fa/trec-2022")
    proc = run_script("run_neuclir.py", "--datasets", topics.spec, "--models", lexical_xlmr,
                      "--query-field", "ht_title", "--romanize-queries", cwd=workdir)
    run = workdir / "runs" / f"{topics.name}.{lexical_xlmr.name}.q-ht_title-uroman.retrieve.res.gz"
    assert run.is_file() and "q-ht_title-uroman" in proc.stdout
    native = topics.queries("ht_title")
    romanised = native.assign(query=[romanize(q) for q in native["query"]])
    assert romanised["query"].str.isascii().all() and not native["query"].str.isascii().all()
    assert provenance.read_record(run)["recipe"]["queries"] == provenance.queries_id(romanised)
    assert (workdir / "runs" / "neuclir.retrieve.q-ht_title-uroman.tables.md").is_file()
    s = {"query_field": "ht_title", "romanize_queries": True}
    assert experiments.neuclir_queries(topics.spec, s["query_field"], s["romanize_queries"]) == \
        "ht_title-uroman"
