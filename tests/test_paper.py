"""The paper's tables from run files: values, significance, published numbers, differences,
flags, the plan of missing runs, the figures; and the paper's released data on first use."""
import math
import re

import matplotlib
import pandas as pd
import pytest
from scipy import stats

from conftest import CA_DEV_QUERIES, FR_DEV_QUERIES, QRELS_SMALL, REPO, fake_hub, run_script
from crossvariety import experiments
from crossvariety.report import figures, paper
from crossvariety.data import released
from crossvariety.errors import UserError
from crossvariety.runs import write_run

RELEVANT = dict(QRELS_SMALL)  # 101 -> 2, 102 -> 1, 103 -> 3, 104 -> 9
# The rank (1-based) of each judged query's relevant passage in each fixture run; None = absent.
RANKS = {
    ("bge-m3", "fr"): [1, 1, 1, 1],
    ("bge-m3", "ca"): [1, 2, None, 4],  # MRR@10 (1 + 1/2 + 0 + 1/4) / 4 = 0.4375, R@1000 0.75
    ("bge-m3", "oc"): [2, 2, 2, 2],  # 0.5, 1.0
    ("bge-m3-lt-afdt", "fr"): [1, 1, 1, 1],
    ("bge-m3-lt-afdt", "ca"): [1, 1, 2, None],  # 0.625, 0.75
    ("bge-m3-lt-afdt", "oc"): [1, 1, 1, 1],  # 1.0, 1.0
    ("bm25", "fr"): [1, 3, 1, 1],  # 0.8333, 1.0
    ("bm25", "ca"): [2, None, None, 1],  # 0.375, 0.5
}


def rr(ranks):
    return [1 / r if r and r <= 10 else 0.0 for r in ranks]


def write_runs(folder, which=RANKS):
    """Runs of the toy French dev/small: the relevant passage at the given rank, others around."""
    for (model, queries), ranks in which.items():
        rows = []
        for qid, rank in zip(RELEVANT, ranks):
            others = [d for d in map(str, range(10)) if d != RELEVANT[qid]][:5]
            ranking = others[:]
            if rank:
                ranking.insert(rank - 1, RELEVANT[qid])
            rows += [(qid, docno, i, 10.0 - i) for i, docno in enumerate(ranking)]
        write_run(pd.DataFrame(rows, columns=["qid", "docno", "rank", "score"]),
                  folder / f"mmarco-v2-fr-dev-small.{model}.q-{queries}.retrieve.res.gz")


@pytest.fixture
def runs(tmp_path, irds_home):
    folder = tmp_path / "runs" / "mmarco"  # where configs/mmarco_*.toml write them
    write_runs(folder)
    return folder


def evaluated(cells, folder):
    paper.evaluate_cells(cells, lambda name: folder / name if (folder / name).is_file() else None,
                         lambda topics: ["MRR@10", "R@1000"])
    return {(c.labels["pair"], c.labels["model"], c.queries): c for c in cells}


def test_rq1_values_significance_and_published_numbers(runs):
    cells = evaluated(paper.rq1(), runs)
    ca = cells["ca-fr", "bge-m3", "ca"]
    assert ca.values["MRR@10"][0] == pytest.approx(0.4375)
    assert ca.values["R@1000"][0] == pytest.approx(0.75)
    assert cells["oc-fr", "bge-m3", "oc"].values["MRR@10"][0] == pytest.approx(0.5)
    assert cells["ca-fr", "bm25", "fr"].values["MRR@10"][0] == pytest.approx((1 + 1 / 3 + 2) / 4)
    # the variety run is tested against the high-resource run of the same pair and system
    expected = stats.ttest_rel(rr(RANKS["bge-m3", "ca"]), rr(RANKS["bge-m3", "fr"])).pvalue
    assert ca.values["MRR@10"][1] == pytest.approx(expected)
    assert math.isnan(cells["ca-fr", "bge-m3", "fr"].values["MRR@10"][1])
    oc = stats.ttest_rel(rr(RANKS["bge-m3", "oc"]), rr(RANKS["bge-m3", "fr"])).pvalue
    assert cells["oc-fr", "bge-m3", "oc"].values["MRR@10"][1] == pytest.approx(oc)  # its own pair's
    assert not cells["af-dt", "bge-m3", "af"].values  # no run: no value

    frame = paper.table(list(cells.values()), ["MRR@10", "R@1000"], tolerance=0.01)
    row = frame[(frame.pair == "ca-fr") & (frame.model == "bge-m3") & (frame.queries == "ca")]
    row = row.iloc[0]
    assert row["MRR@10 paper"] == 0.2185 and row["R@1000 paper"] == 0.8452  # RQ3's original
    assert row["MRR@10 diff"] == pytest.approx(0.4375 - 0.2185) and row["MRR@10 flag"]
    fr = frame[(frame.pair == "oc-fr") & (frame.model == "bge-m3") & (frame.queries == "fr")]
    assert fr.iloc[0]["MRR@10 paper"] == 0.2706  # French under oc-fr as under ca-fr
    bm25 = frame[frame.model == "bm25"]
    assert bm25["MRR@10 paper"].isna().all()  # BM25 was not published
    # the tolerance decides the flag
    loose = paper.table(list(cells.values()), ["MRR@10"], tolerance=0.3)
    assert not loose[(loose.pair == "ca-fr") & (loose.model == "bge-m3") &
                     (loose.queries == "ca")].iloc[0]["MRR@10 flag"]

    text = paper.render(frame, ["MRR@10", "R@1000"])
    line = next(l for l in text.splitlines() if l.startswith("| ca-fr | bge-m3 | ca |"))
    cells_text = [c.strip() for c in line.strip("|").split("|")]
    assert cells_text[3:7] == ["0.4375", "0.078", "0.2185", "+0.2190 !"]  # p = 0.078: no dagger
    assert "| af-dt | bge-m3 | af | – |  | 0.2182 |  |" in text  # missing run, published value
    assert text.startswith("| pair | model | query set | MRR@10 | MRR@10 p | paper | Δ |")
    latex = paper.render(frame, ["MRR@10"], "latex")
    assert "0.4375 & 0.078 & 0.2185 & +0.2190 !" in latex and latex.startswith("\\begin{tabular}")
    csv_text = paper.render(frame, ["MRR@10"], "csv")
    assert "ca-fr,bge-m3,ca,0.4375,0.0779943,0.2185,0.219,True" in csv_text


def test_rq3_fine_tuned_against_original_with_a_correction(runs):
    cells = paper.rq3()
    by_key = evaluated(cells, runs)
    tuned = by_key["ca-fr", "bge-m3-lt-afdt", "ca"]
    assert tuned.labels["trained on"] == "af-dt" and cells[tuned.baseline].model == "bge-m3"
    assert tuned.values["MRR@10"][0] == pytest.approx(0.625)
    raw = stats.ttest_rel(rr(RANKS["bge-m3-lt-afdt", "ca"]), rr(RANKS["bge-m3", "ca"])).pvalue
    # Bonferroni over the group's two tests (variety and high-resource queries); the French
    # runs are identical (p = 1)
    assert tuned.values["MRR@10"][1] == pytest.approx(min(1.0, 2 * raw))
    assert by_key["ca-fr", "bge-m3-lt-afdt", "fr"].values["MRR@10"][1] == 1.0
    oc = by_key["oc-fr", "bge-m3-lt-afdt", "oc"]
    assert oc.values["MRR@10"][0] == 1.0
    frame = paper.table(cells, ["MRR@10"])
    row = frame[(frame.pair == "oc-fr") & (frame.model == "bge-m3-lt-afdt") &
                (frame.queries == "oc")].iloc[0]
    assert row["MRR@10 paper"] == 0.1969 and row["MRR@10 diff"] == pytest.approx(1 - 0.1969)


def test_figures_hold_ours_filled_and_the_papers_hollow(runs):
    cells = paper.rq3()
    evaluated(cells, runs)
    afdt = paper.subset(cells, lambda c: c.labels["trained on"] == "af-dt")
    fig = figures.transfer_chart(afdt, "MRR@10", "rq3")
    ax = next(a for a in fig.axes if a.get_title().startswith("bge-m3 ->"))
    series = {c.get_label(): c for c in ax.collections}
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[:4] == ["ca-fr: ca", "ca-fr: fr", "oc-fr: oc", "oc-fr: fr"]
    ours = series["ours: original model"].get_offsets().tolist()
    assert ours == [[0, 0.4375], [1, 1.0], [2, 0.5], [3, 1.0]]
    assert series["ours: fine-tuned model"].get_offsets().tolist() == \
        [[0, 0.625], [1, 1.0], [2, 1.0], [3, 1.0]]
    published = series["paper: original model"]
    assert [0.18, 0.2185] in [[round(x, 2), y] for x, y in published.get_offsets().tolist()]
    assert len(published.get_facecolor()) == 0 or published.get_facecolor()[0][3] == 0  # hollow
    assert series["ours: original model"].get_facecolor()[0][3] == 1  # filled
    arrows = [c for c in ax.get_children() if isinstance(c, matplotlib.text.Annotation)]
    assert len(arrows) >= 4  # original -> fine-tuned, ours and the paper's

    rq1 = paper.rq1()
    evaluated(rq1, runs)
    fig = figures.gap_chart(rq1, "MRR@10", "rq1")
    ax = next(a for a in fig.axes if a.get_title() == "bge-m3")
    series = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert series["ours: high-resource queries"] == [[0, 1.0], [1, 1.0]]
    assert series["ours: variety queries"] == [[0, 0.4375], [1, 0.5]]
    assert [round(x, 2) for x, _ in series["paper: variety queries"]][:2] == [0.18, 1.18]
    stems = figures.save(fig, runs / "rq1.MRR@10")
    assert [p.suffix for p in stems] == [".png", ".pdf"] and all(p.stat().st_size for p in stems)


def test_make_tables_script_and_plan(runs):
    workdir = runs.parent.parent
    proc = run_script("make_tables.py", "--experiments", "rq1", "rq3", "--plan", cwd=workdir)
    out = proc.stdout
    assert "rq1: 52 run files, 5 present, 47 missing" in out  # the French runs serve 2 pairs
    assert "python run_mmarco.py --config configs/mmarco_bm25.toml   # 11 missing runs, no GPU" \
        in out.replace(str(REPO) + "/", "")
    assert "runs/mmarco/mmarco-v2-dt-dev-small.bm25.q-af.retrieve.res.gz" in out
    assert re.search(r"mmarco_bge-m3_rerank_mt5.toml   # \d+ missing runs, GPU ~\d+\.\d h", out)
    assert "No config" not in out  # every table's runs have a config, ColBERT-XM's included
    assert re.search(r"mmarco_colbert-xm.toml   # 13 missing runs, GPU ~\d+\.\d h", out)
    assert "runs/mmarco/mmarco-v2-fr-dev-small.colbert-xm.q-ca.retrieve.res.gz" in out

    proc = run_script("make_tables.py", "--experiments", "rq1", "rq3", cwd=workdir)
    assert "## rq1 (49 of 56 rows have no run yet: make_tables.py --plan)" in proc.stdout
    assert "| ca-fr | bge-m3 | ca | 0.4375 | 0.078 | 0.2185 | +0.2190 ! |" in proc.stdout
    tables = workdir / "runs" / "tables"
    for name in ("rq1.table.md", "rq1.table.csv", "rq1.table.tex", "rq1.MRR@10.png",
                 "rq1.R@1000.pdf", "rq3-af-dt.MRR@10.png", "rq3-ca-fr.MRR@10.pdf"):
        assert (tables / name).is_file(), name


def test_released_queries_land_where_the_run_scripts_look(tmp_path, monkeypatch):
    import huggingface_hub.constants
    hub = fake_hub(tmp_path / "hub", released.REPO, {
        "queries/dev_small/ca.tsv": "".join(f"{q}\t{t}\n" for q, t in CA_DEV_QUERIES.items()),
        "queries/dev_small/oc.tsv": "query_id\ttext\n101\tQual?\n",  # odd: a header line
        "train_with_negs/triples.fr_ca.train.HN.2way.2.0M.jsonl": '{"query": "q"}\n',
        "queries/train/mmarco.v2.dt_af.train.judged.tsv": "1001\tWat is drinkwater?\n"})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    target = tmp_path / "data" / "translations" / "mmarco-v2-fr-dev-small.ca.tsv"
    released.install_queries("ca-fr", target, "dev", FR_DEV_QUERIES)
    assert target.read_text() == "".join(f"{q}\t{t}\n" for q, t in CA_DEV_QUERIES.items())
    with pytest.raises(UserError, match=r"(?s)the paper's released file andreaschari/mmarco-lt/"
                                        r"queries/dev_small/oc.tsv is not what this code expects "
                                        r"\(.*qid 'query_id'.*a header line"):
        released.install_queries("oc-fr", tmp_path / "oc.tsv", "dev", FR_DEV_QUERIES)
    assert not (tmp_path / "oc.tsv").exists()
    with pytest.raises(UserError, match=r"could not get queries/dev_small/gd.tsv of the paper's "
                                        r"released data .*: not in the local Hugging Face cache, "
                                        r"and the hub cannot be reached .*`huggingface-cli "
                                        r"download --repo-type dataset andreaschari/mmarco-lt "
                                        r"queries/dev_small/gd.tsv`"):
        released.install_queries("gd-en", tmp_path / "gd.tsv", "dev", ["1"])
    target = tmp_path / "data" / "translations" / "mmarco-v2-fr-train.ca.tsv"
    with pytest.raises(UserError, match="queries/train/mmarco.v2.fr_ca.train.judged.tsv"):
        released.install_queries("ca-fr", target, "train")  # not in the (fake) release
    assert not target.exists()
    path = released.resolve("paper:ca-fr", "training")
    assert path.endswith("triples.fr_ca.train.HN.2way.2.0M.jsonl") and str(hub) in path
    assert released.resolve("data/mine.jsonl", "training") == "data/mine.jsonl"
    afrikaans = released.install_queries("af-dt", tmp_path / "mmarco-v2-dt-train.af.tsv", "train")
    assert afrikaans.read_text() == "1001\tWat is drinkwater?\n"
    assert released.resolve("paper:af-dt", "train-queries").endswith(
        "mmarco.v2.dt_af.train.judged.tsv")
    with pytest.raises(UserError, match="paper:ca-fr, paper:af-dt only"):
        released.resolve("paper:gd-en", "training")


def test_run_mmarco_fetches_the_papers_queries_and_yours_win(tmp_path, workdir):
    hub = fake_hub(tmp_path / "hub", released.REPO, {
        "queries/dev_small/ca.tsv": "101\tPaper 1\n102\tPaper 2\n103\tPaper 3\n104\tPaper 4\n"})
    env = {"HF_HUB_CACHE": str(hub)}
    mine = workdir / "data" / "translations" / "mmarco-v2-fr-dev-small.ca.tsv"
    before = mine.read_text()
    proc = run_script("run_mmarco.py", "--pairs", "ca-fr", cwd=workdir, env=env)
    assert "released" not in proc.stderr and mine.read_text() == before  # the user's file wins
    mine.unlink()
    proc = run_script("run_mmarco.py", "--pairs", "ca-fr", "--overwrite", cwd=workdir, env=env)
    assert "using the paper's released dev queries of ca-fr (andreaschari/mmarco-lt/queries/" \
           "dev_small/ca.tsv, 4 queries)" in proc.stderr
    assert mine.read_text().startswith("101\tPaper 1\n")


# Runs of the other experiments: the judged documents' ranks in each fixture run.
RQ2_RANKS = {  # rq2: the pair the models were trained on (ca-fr)
    ("bge-m3-lt-cafr", "fr"): [1, 1, 2, 1],  # MRR@10 (1 + 1 + 1/2 + 1) / 4 = 0.875
    ("bge-m3-lt-cafr", "ca"): [1, 1, 1, 3],  # (3 + 1/3) / 4 = 0.8333
}
NEU_RANKINGS = {  # {(topics, model): {qid: docnos, best first}} over the Persian toy documents
    ("neumarco-fa-dev-small", "bge-m3", "en"): {"201": ["f2", "f0"], "202": ["f0", "f1"],
                                                "203": ["f0", "f4"]},  # (1 + 1/2 + 0) / 3 = 0.5
    ("neumarco-fa-dev-small", "bge-m3-lt-cafr", "en"): {"201": ["f2"], "202": ["f1"],
                                                        "203": ["f1", "f2", "f3"]},  # 7/9
    ("neuclir-1-fa-trec-2022", "bge-m3", "title"): {"301": ["f4", "f1"], "302": ["f0", "f2"]},
    ("neuclir-1-fa-trec-2022", "bge-m3-lt-cafr", "title"): {"301": ["f1"],
                                                            "302": ["f2", "f0", "f4"]},
}


def ndcg(ranking, judgements, k=20):
    """nDCG@k by hand: gain = the label, discount log2(rank + 1) (trec_eval's)."""
    dcg = sum(judgements.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted(judgements.values(), reverse=True)[:k]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


def write_neu_runs(workdir):
    for (topics, model, queries), rankings in NEU_RANKINGS.items():
        rows = [(qid, docno, i, 10.0 - i) for qid, docnos in rankings.items()
                for i, docno in enumerate(docnos)]
        folder = workdir / "runs" / topics.split("-")[0]  # where configs/neu*.toml write them
        write_run(pd.DataFrame(rows, columns=["qid", "docno", "rank", "score"]),
                  folder / f"{topics}.{model}.q-{queries}.retrieve.res.gz")


def test_rq2_neumarco_and_neuclir_values(runs):
    write_runs(runs, RQ2_RANKS)
    cells = paper.rq2()
    by_key = evaluated(cells, runs)
    tuned = by_key["ca-fr", "bge-m3-lt-cafr", "ca"]
    assert tuned.labels["trained on"] == "ca-fr" and cells[tuned.baseline].model == "bge-m3"
    assert tuned.values["MRR@10"][0] == pytest.approx((3 + 1 / 3) / 4)
    ca = stats.ttest_rel(rr(RQ2_RANKS["bge-m3-lt-cafr", "ca"]), rr(RANKS["bge-m3", "ca"])).pvalue
    fr = stats.ttest_rel(rr(RQ2_RANKS["bge-m3-lt-cafr", "fr"]), rr(RANKS["bge-m3", "fr"])).pvalue
    assert tuned.values["MRR@10"][1] == pytest.approx(min(1.0, 2 * ca))  # Bonferroni over 2
    assert by_key["ca-fr", "bge-m3-lt-cafr", "fr"].values["MRR@10"][1] == \
        pytest.approx(min(1.0, 2 * fr))
    assert not by_key["af-dt", "bge-m3-lt-afdt", "af"].values  # no Dutch runs here
    assert {c.labels["trained on"] for c in cells} == {"ca-fr", "af-dt"}

    workdir = runs.parent.parent
    write_neu_runs(workdir)
    experiments = paper.experiments(["neumarco", "neuclir"])
    for name, measure, value in (("neumarco", "MRR@10", {"bge-m3": 0.5, "bge-m3-lt-cafr": 7 / 9}),
                                 ("neuclir", "nDCG@20", {
                                     "bge-m3": (ndcg(["f4", "f1"], {"f1": 3, "f4": 0}) +
                                                ndcg(["f0", "f2"], {"f2": 2, "f0": 1})) / 2,
                                     "bge-m3-lt-cafr": (1 + 1) / 2})):
        cells = experiments[name]
        paper.evaluate_cells(cells, lambda run: next(
            (p for p in workdir.glob(f"runs/*/{run}")), None), lambda topics: [measure])
        got = {c.labels["model"]: c.values[measure][0] for c in cells if c.values}
        assert got == pytest.approx(value)
        assert all(c.labels["dataset"].startswith(name) for c in cells)
        tuned = next(c for c in cells if c.values and c.model == "bge-m3-lt-cafr")
        assert cells[tuned.baseline].model == "bge-m3" and 0 < tuned.values[measure][1] <= 1


def test_make_tables_other_experiments_script(runs):
    """make_tables.py --experiments rq2 neumarco neuclir: each table's values, the figures of
    rq2 (transfer charts), the files."""
    write_runs(runs, RQ2_RANKS)
    workdir = runs.parent.parent
    write_neu_runs(workdir)
    proc = run_script("make_tables.py", "--experiments", "rq2", "neumarco", "neuclir",
                      cwd=workdir)
    out = proc.stdout
    assert "## rq2 (20 of 24 rows have no run yet: make_tables.py --plan)" in out
    assert re.search(r"\| ca-fr \| ca-fr \| bge-m3-lt-cafr \| ca \| 0\.8333 \|", out)
    assert "## neumarco (25 of 27 rows have no run yet" in out
    assert "| neumarco-fa-dev-small | bge-m3-lt-cafr | en | 0.7778 |" in out
    assert "## neuclir (52 of 54 rows have no run yet" in out
    expected = (ndcg(["f4", "f1"], {"f1": 3, "f4": 0}) + ndcg(["f0", "f2"], {"f2": 2, "f0": 1})) / 2
    assert f"| neuclir-1-fa-trec-2022 | bge-m3 | title | {expected:.4f} |" in out
    assert "| neuclir-1-fa-trec-2022 | bge-m3-lt-cafr | title | 1.0000" in out
    headers = {section.split()[0]: section.splitlines()[1] for section in out.split("## ")[1:]}
    assert headers["neumarco"] == "| dataset | model | query set | MRR@10 | MRR@10 p | R@1000 | R@1000 p |"
    assert headers["neuclir"] == "| dataset | model | query set | nDCG@20 | nDCG@20 p | R@1000 | R@1000 p |"
    tables = workdir / "runs" / "tables"
    for name in ("rq2.table.md", "rq2-ca-fr.MRR@10.png", "neumarco.table.csv",
                 "neuclir.table.tex"):
        assert (tables / name).is_file(), name


def test_make_tables_of_a_run_neuclir_config(tmp_path, irds_home):
    """A run_neuclir.py config that re-ranks: its own tables, one per kind of topics (their own
    measures), with the re-ranked runs as rows (the first stage's run is not one), each
    fine-tuned re-ranker tested against the original."""
    config = tmp_path / "neu.toml"
    config.write_text('[paths]\nruns_dir = "runs/neu"\n[run_neuclir]\n'
                      'datasets = ["irds:neuclir/1/fa/trec-2022", "irds:neumarco/fa/dev/small"]\n'
                      'models = ["bge-m3"]\nrerank = ["mt5", "mt5-lt-cafr"]\n')
    for (topics, model, queries), rankings in NEU_RANKINGS.items():
        rows = [(qid, docno, i, 10.0 - i) for qid, docnos in rankings.items()
                for i, docno in enumerate(docnos)]
        reranker = "mt5" if model == "bge-m3" else "mt5-lt-cafr"
        name = f"{topics}.bge-m3.q-{queries}.rerank-{reranker}.res.gz"
        write_run(pd.DataFrame(rows, columns=["qid", "docno", "rank", "score"]),
                  tmp_path / "runs" / "neu" / name)
    cells = paper.config_cells(experiments.config_outputs(config))
    assert [(paper.kind(c), c.labels["model"], c.baseline) for c in cells] == [
        ("neuclir", "bge-m3 >> mt5", None), ("neuclir", "bge-m3 >> mt5-lt-cafr", 0),
        ("neumarco", "bge-m3 >> mt5", None), ("neumarco", "bge-m3 >> mt5-lt-cafr", 2)]
    proc = run_script("make_tables.py", "--config", config, "--no-figures", cwd=tmp_path)
    sections = {s.split()[0]: s for s in proc.stdout.split("## ")[1:]}
    assert set(sections) == {"neu-neuclir", "neu-neumarco"}
    nd = (ndcg(["f4", "f1"], {"f1": 3, "f4": 0}) + ndcg(["f0", "f2"], {"f2": 2, "f0": 1})) / 2
    assert sections["neu-neuclir"].splitlines()[1] == \
        "| dataset | query set | model | nDCG@20 | nDCG@20 p | R@1000 | R@1000 p |"
    assert f"| neuclir-1-fa-trec-2022 | title | bge-m3 >> mt5 | {nd:.4f} |  | 1.0000 |  |" in \
        sections["neu-neuclir"]
    assert "| neumarco-fa-dev-small | en | bge-m3 >> mt5-lt-cafr | 0.7778" in \
        sections["neu-neumarco"]
    assert (tmp_path / "runs" / "neu" / "neu-neuclir.table.md").is_file()
