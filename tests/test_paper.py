"""The paper's tables from run files: values, significance, published numbers, differences,
flags, the plan of missing runs, the figures; and the paper's released data on first use."""
import math
import re

import matplotlib
import pandas as pd
import pytest
from scipy import stats

from conftest import CA_DEV_QUERIES, FR_DEV_QUERIES, QRELS_SMALL, REPO, fake_hub, run_script
from crossvariety import figures, paper, released
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
    assert cells_text[3:6] == ["0.4375", "0.2185", "+0.2190 !"]  # p = 0.078: no dagger
    assert "| af-dt | bge-m3 | af | – | 0.2182 |  |" in text  # missing run, published value
    latex = paper.render(frame, ["MRR@10"], "latex")
    assert "0.4375 & 0.2185 & +0.2190 !" in latex and latex.startswith("\\begin{tabular}")
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
    assert "| ca-fr | bge-m3 | ca | 0.4375 | 0.2185 | +0.2190 ! |" in proc.stdout
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
