"""benchmarks/gpu_suite.py: its --smoke run (every part, tiny models, CPU) reports every part and
figure, and a part that fails or hangs is recorded without stopping the others; the figures'
ratios and targets; a re-run keeps what was measured."""
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO, smoke_run

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_suite  # noqa: E402

SUITE = REPO / "benchmarks" / "gpu_suite.py"


@pytest.fixture(scope="module")
def smoke():
    """The --smoke run with injected failures (started in the background by conftest when the
    session begins)."""
    out, proc, seconds = smoke_run()
    print(f"gpu_suite.py --smoke: {seconds:.0f} s\n{proc.stdout}")
    return out, proc, json.loads(out.with_suffix(".json").read_text())


def test_smoke_runs_every_part_and_records_the_injected_failures(smoke):
    out, proc, report = smoke
    assert proc.returncode == 1, proc.stderr  # the injected failures, and nothing else
    assert "failed: injected_error, injected_timeout" in proc.stderr
    parts = report["parts"]
    assert list(parts) == ["injected_error", "injected_timeout", *gpu_suite.PARTS]
    for name in gpu_suite.PARTS:  # the failures before them stopped none of them
        assert parts[name]["status"] == "ok", (name, parts[name]["error"])
        assert parts[name]["results"], name
        assert parts[name]["seconds"] > 0 and parts[name]["cpu_seconds"] > 0
    error = parts["injected_error"]
    assert error["status"] == "failed"
    assert "RuntimeError: failure injected by --inject-failure" in error["error"]
    hang = parts["injected_timeout"]
    assert hang["status"] == "timed out"
    assert hang["limit_s"] == gpu_suite.INJECTED_TIMEOUT_S
    assert hang["seconds"] < gpu_suite.INJECTED_TIMEOUT_S + 12  # stopped, not waited for
    assert report["suite"]["smoke"] is True
    env = report["environment"]
    assert env["device"].startswith("cpu") and env["torch"] and env["transformers"]


def test_smoke_reports_every_figure_as_a_number(smoke):
    _, _, report = smoke
    rows = report["figures"]
    expected = [(name, label) for name in report["parts"]
                for label, key, *_ in gpu_suite.FIGURES[name]
                if key.split(".")[-1] not in gpu_suite.GPU_ONLY]
    assert [(r["part"], r["figure"]) for r in rows] == expected
    for row in rows:
        assert isinstance(row["value"], (int, float)) and math.isfinite(row["value"]), row
        if "reference" in row:
            assert row["reference_value"] > 0 and row["ratio"] > 0, row
        if "target" in row:
            assert row["target_met"] is None  # tiny models on a CPU are not judged
    # a part's result written before it failed or hung is kept
    kept = {r["part"]: r["value"] for r in rows if r["part"].startswith("injected")}
    assert kept == {"injected_error": 1.0, "injected_timeout": 1.0}


def test_smoke_writes_the_markdown_summary_and_the_log(smoke):
    out, _, report = smoke
    text = out.with_suffix(".md").read_text()
    assert f"# GPU suite (smoke: tiny models on the CPU): {report['environment']['device']}" in text
    for name, part in report["parts"].items():
        assert f"| {name} | {part['status']} |" in text
    assert "### injected_error: failed" in text and "### injected_timeout: timed out" in text
    assert "| rerank | ours compiled, bf16 |" in text and "| >= 10000 |" in text
    log = out.with_suffix(".log").read_text()
    for name in report["parts"]:
        assert f"===== {name}:" in log


def test_a_rerun_keeps_what_was_measured(smoke):
    out, _, report = smoke
    proc = subprocess.run([sys.executable, str(SUITE), "--smoke", "--parts", "search", "--out",
                           str(out)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "search: kept from" in proc.stdout
    again = json.loads(out.with_suffix(".json").read_text())
    assert again["parts"]["search"] == report["parts"]["search"]


def test_results_of_another_device_are_not_mixed(smoke, tmp_path):
    out, _, report = smoke
    other = tmp_path / "other"
    report["environment"]["device"] = "NVIDIA H200"
    report["suite"]["smoke"] = False
    other.with_suffix(".json").write_text(json.dumps(report))
    proc = subprocess.run([sys.executable, str(SUITE), "--smoke", "--parts", "search", "--out",
                           str(other)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"gpu_suite.py: {other.with_suffix('.json')} holds results of NVIDIA H200")
    assert json.loads(other.with_suffix(".json").read_text()) == report  # nothing lost


def test_figures_ratio_and_targets_on_a_gpu():
    part = {"results": {
        "compiled": {"pairs_per_s": 12000.0, "fraction_of_bf16_peak": 0.3},
        "compiled_fp8": {"pairs_per_s": 15000.0},
        "pyterrier_t5_bs4": {"pairs_per_s": 100.0}}}
    rows = {(r["figure"], r.get("reference")): r for r in gpu_suite.figures("rerank", part, False)}
    best = rows[("ours compiled, bf16", "pyterrier-t5, batch 4, fp32")]
    assert best["ratio"] == 120 and best["target"] == ">= 10000" and best["target_met"] is True
    fp8 = rows[("ours compiled, fp8", "pyterrier-t5, batch 4, fp32")]
    assert fp8["target_met"] is False
    missing = rows[("ours eager, bf16", "pyterrier-t5, batch 4, fp32")]
    assert missing["value"] is None and missing["ratio"] is None
    assert rows[("compiled: share of the bf16 peak", None)]["value"] == 0.3
    # seconds: lower is better, the ratio is the reference's time over ours
    search = {"results": {"search_ours": {"seconds": 1.5, "matmul_topk_seconds": 1.2},
                          "search_np_retriever": {"seconds_scaled_to_full": 300.0}}}
    frame, alone = gpu_suite.figures("search", search, False)
    assert frame["ratio"] == 200 and frame["target_met"] is True
    assert alone["target"] == "< 1" and alone["target_met"] is False
    # a target on the ratio: finetune_mt5.py at batch 4 >= 2x the original loop
    train = {"results": {"mt5_ours_bs4": 50.0, "mt5_reference_bs4_fp32": 26.0}}
    bs4 = gpu_suite.figures("train_mt5", train, False)[1]
    assert bs4["target"] == ">= 2x" and bs4["target_met"] is False


def test_without_a_gpu_it_says_to_use_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(SUITE), "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2
    assert "no GPU here: --smoke runs the suite's check on the CPU" in proc.stderr
    assert not list(tmp_path.iterdir())
