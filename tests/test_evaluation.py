import math

import numpy as np
import pandas as pd
import pytest

from crossvariety.report.evaluation import default_measures, evaluate, format_table

QRELS = pd.DataFrame([("q1", "d1", 1), ("q1", "d3", 1), ("q2", "d5", 2), ("q3", "d9", 1)],
                     columns=["qid", "docno", "label"])


def run(rows):
    return pd.DataFrame(rows, columns=["qid", "docno", "score"])


# Run A: q1 relevant at ranks 2 and 3, q2 at rank 1, q3 nothing relevant.
RUN_A = run([("q1", "d2", 3.0), ("q1", "d1", 2.0), ("q1", "d3", 1.0), ("q2", "d5", 1.0),
             ("q3", "d8", 2.0), ("q3", "d7", 1.0)])
# Run B: q1 one of two relevant at rank 1, q2 relevant at rank 2, q3 missing (scores 0).
RUN_B = run([("q1", "d1", 5.0), ("q1", "d4", 4.0), ("q2", "d4", 2.0), ("q2", "d5", 1.0)])


def test_exact_values_on_a_hand_checkable_fixture():
    table, per_query, problems = evaluate({"A": RUN_A, "B": RUN_B}, QRELS,
                                          ["MRR@10", "R@1000", "nDCG@20"], baseline=None)
    assert table.loc["A", "MRR@10"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert table.loc["A", "R@1000"] == pytest.approx((1 + 1 + 0) / 3)
    assert table.loc["B", "MRR@10"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert table.loc["B", "R@1000"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    b = per_query[(per_query.run == "B") & (per_query.measure == "nDCG@20")].set_index("qid").value
    assert b["q2"] == pytest.approx(1 / math.log2(3))  # gain 2 at rank 2 over gain 2 at rank 1
    assert b["q3"] == 0.0
    assert list(table.queries) == [3, 3]
    assert problems == ["B: no results for 1 of 3 judged queries (each scored 0): qids q3"]


def test_mismatched_runs_are_reported_not_silently_zero():
    other_collection = run([("q1", "x1", 1.0), ("q2", "x2", 1.0), ("q3", "x3", 1.0),
                            ("q9", "x1", 1.0)])
    _, _, problems = evaluate({"X": other_collection}, QRELS, ["MRR@10"], baseline=None)
    assert any("none of its docnos appears in the qrels" in p for p in problems)
    assert any("1 of its 4 queries have no qrels" in p for p in problems)
    with pytest.raises(ValueError, match="shares no query with the qrels"):
        evaluate({"Y": run([("z1", "d1", 1.0)])}, QRELS, ["MRR@10"])


def test_significance_matches_pyterrier_experiment():
    import pyterrier as pt
    from ir_measures import R, RR

    rng = np.random.default_rng(0)
    qids = [f"q{i}" for i in range(40)]
    docs = [f"d{i}" for i in range(30)]
    qrels = pd.DataFrame([(q, d, 1) for q in qids for d in rng.choice(docs, 3, replace=False)],
                         columns=["qid", "docno", "label"])
    runs = {name: run([(q, d, float(s)) for q in qids
                       for s, d in enumerate(rng.permutation(docs)[:20])])
            for name in ("base", "s1", "s2")}
    table, _, _ = evaluate(runs, qrels, ["MRR@10", "R@10"], baseline=0, correction="bonferroni")
    reference = pt.Experiment(list(runs.values()), pd.DataFrame({"qid": qids, "query": "x"}),
                              qrels, eval_metrics=[RR @ 10, R @ 10], names=list(runs),
                              baseline=0, correction="bonferroni")
    reference = reference.set_index("name")
    for name in ("s1", "s2"):
        assert table.loc[name, "MRR@10"] == pytest.approx(reference.loc[name, "RR@10"])
        assert table.loc[name, "MRR@10 p"] == pytest.approx(
            reference.loc[name, "RR@10 p-value corrected"])
        assert table.loc[name, "R@10 p"] == pytest.approx(
            reference.loc[name, "R@10 p-value corrected"])
    assert math.isnan(table.loc["base", "MRR@10 p"])


def test_formats():
    table, _, _ = evaluate({"A": RUN_A, "B": RUN_B}, QRELS, ["MRR@10"], baseline=0)
    md = format_table(table, "markdown")
    assert md.splitlines()[0] == "| run | queries | MRR@10 | MRR@10 p |"
    assert "| A | 3 | 0.5000 |  |" in md
    csv = format_table(table, "csv")
    assert csv.splitlines()[0] == "run,queries,MRR@10,MRR@10 p"
    latex = format_table(table, "latex")
    assert latex.startswith("\\begin{tabular}{lrrr}") and "A & 3 & 0.5000 &  \\\\" in latex
    with pytest.raises(ValueError, match="unknown table format"):
        format_table(table, "html")


def test_unknown_measure_and_correction():
    with pytest.raises(ValueError, match="unknown measure 'MRR@ten'"):
        evaluate({"A": RUN_A}, QRELS, ["MRR@ten"])
    with pytest.raises(ValueError, match="unknown correction"):
        evaluate({"A": RUN_A}, QRELS, ["MRR@10"], correction="magic")


def test_default_measures():
    assert default_measures("irds:neuclir/1/fa/trec-2022") == ["nDCG@20", "R@1000"]
    assert default_measures("irds:mmarco/v2/fr/dev/small") == ["MRR@10", "R@1000"]
