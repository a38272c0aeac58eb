import gzip

import numpy as np
import pandas as pd
import pyterrier as pt

from crossvariety.runs import read_run, run_precision, write_run


def test_write_run_is_pyterriers_trec_file_gzipped(tmp_path):
    """The same lines as pt.io.write_results (gzip at a fast level), whatever the columns'
    dtypes (TorchSearch gives numpy object columns, PISA pandas strings)."""
    results = pd.DataFrame({"qid": pd.Series(["q1", "q1", "q2"], dtype=object),
                            "docno": pd.array(["dé", "d2", "d3"], dtype="str"),
                            "rank": np.array([0, 1, 0]),
                            "score": np.array([1.5, -2.25e-7, 3.0], dtype=np.float32)})
    plain = tmp_path / "plain.res"
    pt.io.write_results(results, str(plain), run_name="x:bf16")
    write_run(results, tmp_path / "ours.res.gz", name="x:bf16")
    with gzip.open(tmp_path / "ours.res.gz", "rt", encoding="utf-8") as f:
        assert f.read() == plain.read_text(encoding="utf-8")
    assert run_precision(tmp_path / "ours.res.gz") == "bf16"
    back = read_run(tmp_path / "ours.res.gz")
    assert list(back.docno) == ["dé", "d2", "d3"] and list(back.qid) == ["q1", "q1", "q2"]
    write_run(results, tmp_path / "ours.res", name="x:bf16")  # no .gz: not compressed
    assert (tmp_path / "ours.res").read_text(encoding="utf-8") == plain.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.res", "ours.res.gz", "plain.res"]
