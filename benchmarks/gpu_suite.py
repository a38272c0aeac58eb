"""Every GPU measurement of the project in one command, on one H100/H200 in under 9 minutes.

Runs the benchmarks of this folder part by part, each in its own process (a CUDA fault, a hang
or a crash ends that part only) with a time limit, most informative first:

  rerank         mT5-base re-ranking of 109-token pairs: ours compiled (bf16), compiled fp8 and
                 eager against pyterrier-t5 at batch 4 and 64 on a sample (bench_rerank.py)
  encode         BGE-M3 (XLM-R large), 68-token passages: ours compiled and eager against
                 pyterrier-dr (fp32, batch 64) (bench_dense.py --parts encode)
  search         6,980 queries x 8.8M x 1024 fp16 vectors made on the device, top-1000, the run
                 frame included, matmul + top-k apart; np_retriever on 200k, scaled (bench_dense.py)
  precision      bf16 and fp8 against fp32 on the real architectures: Kendall tau and top-10
                 overlap of re-ranked lists, cosines of vectors (bench_precision.py)
  colbert        ColBERT-XM (X-MOD base): encoding, PLAID indexing of 200k passages, search timed
                 there and extrapolated to 6,980 queries over 8.8M (method: bench_colbert.py)
  train_mt5      finetune_mt5.py at batch 32 and 4 against the original loop (bench_train.py)
  train_bgem3    finetune_bgem3.py against FlagEmbedding's reference command (bench_train.py)
  train_colbert  finetune_colbertxm.py at the recipe's 32 tuples per step (bench_train.py)

Models are the real architectures at random weights (throughput does not depend on the weights;
the hub is not needed), built once and shared by the parts. A part's limit is its share of
--budget (PARTS below) plus whatever the parts before it left unused; a part stopped at its
limit keeps what it had measured (the benchmarks write their JSON as they go). Compilation is in
each part's time and reported apart (the warm-up of each compiled path, the trainers' whole runs).

Writes {out}.json (the device, torch/CUDA/transformers versions, each part's status, time, limit,
error and raw results, and the figures: each with the reference measured in the same run, the
ratio to it and the issue's target), {out}.md (the same as tables) and {out}.log (every part's
output), after every part. A re-run keeps the parts already measured on the same device and runs
the others; --overwrite measures the chosen --parts again.

--smoke runs the same suite on the CPU with tiny models (2-layer, a few dozen inputs; compiled
paths through torch.compile's eager backend): a check that every part still runs and reports
(tests/test_gpu_suite.py), in about 1.5 minutes on 2 idle cores. Its figures say nothing about
speed.

On a GPU lent through the device tool (docs/gpu_suite.md has the details): the device's image
has transformers 5.x, under which FlagEmbedding (the references of pyterrier-dr and of BGE-M3's
training) does not import, and none of PyTerrier. Once, here, in the repository's root, fetch the
wheels of benchmarks/gpu_wheels.txt (~30 MB):

  echo /.whl/ >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \\
      --platform manylinux2014_x86_64 -d .whl -r benchmarks/gpu_wheels.txt

then one call of the device tool's run, with carry [".whl"] and timeout_s 600:

  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
  --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; \\
  PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py --out $OUT/gpu_suite

and the JSON, Markdown and log come back from $OUT. To measure some parts again after a fix,
within the same lease: ... gpu_suite.py --parts rerank,encode --budget 240 --out $OUT/gpu_suite.

  python benchmarks/gpu_suite.py                  # on a GPU: 9 minutes
  python benchmarks/gpu_suite.py --smoke --out /tmp/smoke   # on a CPU: the check
"""
import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.time()  # the budget counts the suite's own start (torch, the GPU's context) too
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from crossvariety.errors import UserError, install_handler  # noqa: E402

# -----------------------------------------------------------------------------
BUDGET_S = 540  # the whole suite on one H100/H200 (9 minutes), compilation included
# name: (benchmark, its arguments on a GPU, on the CPU with --smoke, the part's share of the
# budget in seconds on a GPU: 530 in all, 10 s left for the suite's start), most informative first
PARTS = {
    "rerank": ("bench_rerank.py",
               ["--size", "base", "--pairs", 40000, "--ref-pairs", 400, "--warmup-pairs", 2000,
                "--variants", "compiled,compiled_fp8,eager", "--score-check-pairs", 100],
               ["--pairs", 48, "--ref-pairs", 8, "--warmup-pairs", 8, "--score-check-pairs", 8,
                "--variants", "compiled,compiled_fp8,eager", "--compile-backend", "eager"],
               120),
    "encode": ("bench_dense.py",
               ["--size", "large", "--parts", "encode", "--docs", 40000, "--ref-docs", 1000,
                "--warmup-docs", 4000, "--variants", "compiled,eager"],
               ["--parts", "encode", "--docs", 48, "--ref-docs", 8, "--warmup-docs", 8,
                "--variants", "compiled,eager", "--compile-backend", "eager"],
               100),
    "search": ("bench_dense.py",
               ["--parts", "search", "--search-docs", 8_800_000, "--queries", 6980,
                "--ref-search-docs", 200_000, "--ref-search-queries", 200],
               ["--parts", "search", "--search-docs", 2000, "--queries", 50,
                "--ref-search-docs", 2000, "--ref-search-queries", 20],
               35),
    "precision": ("bench_precision.py",
                  ["--size", "base", "--queries", 10, "--passages", 1000, "--vectors", 4000],
                  ["--queries", 2, "--passages", 24, "--vectors", 16],
                  45),
    "colbert": ("bench_colbert.py",
                ["--size", "base", "--docs", 200_000, "--ref-docs", 20_000, "--queries", 50,
                 "--search-queries", 500, "--reference", "off"],
                ["--docs", 120, "--ref-docs", 40, "--queries", 5, "--search-queries", 10,
                 "--reference", "off"],
                60),
    "train_mt5": ("bench_train.py", ["--size", "base", "--parts", "mt5", "--steps", 40],
                  ["--parts", "mt5", "--steps", 4, "--examples", 200], 70),
    "train_bgem3": ("bench_train.py", ["--size", "base", "--parts", "bgem3", "--steps", 40,
                                       "--bgem3-eager", "off"],
                    ["--parts", "bgem3", "--steps", 4, "--examples", 200], 70),
    "train_colbert": ("bench_train.py", ["--size", "base", "--parts", "colbert", "--steps", 40],
                      ["--parts", "colbert", "--steps", 4, "--examples", 200], 30),
}
SMOKE_PART_S = 300  # a part's limit with --smoke (slow shared CI machines)
INJECTED_TIMEOUT_S = 3
# The figures of each part: (label, key in its results (a.b = b of record a), unit, the key of
# the reference measured in the same run or None, the target: (op, number) on the value,
# or on the ratio to the reference when the op starts with "x"). "s" units: lower is better.
FIGURES = {
    "rerank": [
        ("ours compiled, bf16", "compiled.pairs_per_s", "pairs/s", "pyterrier_t5_bs4", (">=", 1e4)),
        ("ours compiled, bf16", "compiled.pairs_per_s", "pairs/s", "pyterrier_t5_bs64", None),
        ("ours compiled, fp8", "compiled_fp8.pairs_per_s", "pairs/s", "pyterrier_t5_bs4",
         (">=", 2e4)),
        ("ours eager, bf16", "eager.pairs_per_s", "pairs/s", "pyterrier_t5_bs4", None),
        ("ours compiled, the model alone", "compiled.model_only_pairs_per_s", "pairs/s", None,
         None),
        ("compiled: share of the bf16 peak", "compiled.fraction_of_bf16_peak", "", None, None),
        ("compiled: warm-up (compilation)", "compiled.warmup_seconds", "s", None, None),
        ("compiled fp8: warm-up (compilation)", "compiled_fp8.warmup_seconds", "s", None, None),
        ("compiled: graphs compiled while timed", "compiled.graphs_compiled_while_timed", "graphs",
         None, ("<=", 0)),
        ("compiled: largest |score difference| vs pyterrier-t5 batch 1",
         "compiled_max_abs_score_diff_vs_bs1", "", None, None),
        ("tokens per pair, mean", "tokens_per_pair_mean", "tokens", None, None),
    ],
    "encode": [
        ("ours compiled", "compiled.passages_per_s", "passages/s", "pyterrier_dr_fp32_bs64",
         (">=", 1e4)),
        ("ours eager", "eager.passages_per_s", "passages/s", "pyterrier_dr_fp32_bs64", None),
        ("ours compiled, the model alone", "compiled.model_only_passages_per_s", "passages/s",
         None, None),
        ("compiled: share of the bf16 peak", "compiled.fraction_of_bf16_peak", "", None, None),
        ("compiled: warm-up (compilation)", "compiled.warmup_seconds", "s", None, None),
        ("compiled: graphs compiled while timed", "compiled.graphs_compiled_while_timed", "graphs",
         None, ("<=", 0)),
        ("compiled: smallest cosine with pyterrier-dr", "compiled.min_cosine_vs_pyterrier_dr", "",
         None, None),
        ("tokens per passage, mean", "tokens_per_passage_mean", "tokens", None, None),
    ],
    "search": [
        ("ours, run frame included", "search_ours.seconds", "s", "search_np_retriever",
         ("<", 2)),
        ("ours, matmul + top-k alone", "search_ours.matmul_topk_seconds", "s", None, ("<", 1)),
    ],
    "precision": [
        ("re-ranking bf16 vs fp32: Kendall tau, mean", "rerank_bf16_vs_fp32.kendall_tau.mean", "",
         None, (">=", 0.95)),
        ("re-ranking bf16 vs fp32: top-10 overlap, mean", "rerank_bf16_vs_fp32.top10_overlap.mean",
         "", None, None),
        ("re-ranking fp8 vs fp32: Kendall tau, mean", "rerank_fp8_vs_fp32.kendall_tau.mean", "",
         None, None),
        ("re-ranking fp8 vs fp32: top-10 overlap, mean", "rerank_fp8_vs_fp32.top10_overlap.mean",
         "", None, None),
        ("vectors bf16 vs fp32: cosine, min", "encode_bf16_vs_fp32_cosine.min", "", None, None),
        ("vectors fp8 vs fp32: cosine, min", "encode_fp8_vs_fp32_cosine.min", "", None, None),
    ],
    "colbert": [
        ("ours, encoding", "ours_encode_passages_per_s", "passages/s", None, (">=", 1.5e4)),
        ("ours, indexing (codec, encoding, compression, merge)", "ours_index_passages_per_s",
         "passages/s", None, None),
        ("search on the measured index", "ours_search_full_index.queries_per_s", "queries/s",
         None, None),
        ("search, 6,980 queries over 8.8M (extrapolated)", "search_extrapolated.seconds", "s",
         None, ("<", 120)),
        ("search, 6,980 queries over 8.8M (linear bound)",
         "search_extrapolated.seconds_linear_bound", "s", None, None),
        ("top-10 overlap with exhaustive MaxSim", "top10_overlap_ours_vs_exhaustive", "", None,
         None),
        ("index bytes per passage", "ours_index_bytes_per_passage", "bytes", None, None),
    ],
    "train_mt5": [
        ("finetune_mt5.py, batch 32", "mt5_ours_bs32", "samples/s", "mt5_reference_bs4_fp32",
         (">=", 300)),
        ("finetune_mt5.py, batch 4", "mt5_ours_bs4", "samples/s", "mt5_reference_bs4_fp32",
         ("x>=", 2)),
        ("finetune_mt5.py, batch 32: whole run (compilation included)", "mt5_ours_bs32_whole_run_s",
         "s", None, None),
        ("finetune_mt5.py, batch 4: whole run (compilation included)", "mt5_ours_bs4_whole_run_s",
         "s", None, None),
    ],
    "train_bgem3": [
        ("finetune_bgem3.py", "bgem3_ours", "samples/s", "bgem3_reference", (">=", 150)),
        ("finetune_bgem3.py: whole run (compilation included)", "bgem3_ours_whole_run_s", "s",
         None, None),
        ("finetune_bgem3.py: hours per epoch of the paper's 2.0M lines",
         "bgem3_ours_hours_per_epoch", "h", "bgem3_reference_hours_per_epoch", None),
    ],
    "train_colbert": [
        ("finetune_colbertxm.py", "colbertxm_ours", "samples/s", None, None),
        ("finetune_colbertxm.py: whole run", "colbertxm_ours_whole_run_s", "s", None, None),
    ],
    "injected_error": [("written before the failure", "written_before_failure", "", None, None)],
    "injected_timeout": [("written before the hang", "written_before_hang", "", None, None)],
}
REFERENCES = {  # the reference paths' records, the value used and their names
    "pyterrier_t5_bs4": ("pairs_per_s", "pyterrier-t5, batch 4, fp32"),
    "pyterrier_t5_bs64": ("pairs_per_s", "pyterrier-t5, batch 64, fp32"),
    "pyterrier_dr_fp32_bs64": ("passages_per_s", "pyterrier-dr BGEM3, fp32, batch 64"),
    "search_np_retriever": ("seconds_scaled_to_full", "pyterrier-dr np_retriever (scaled)"),
    "mt5_reference_bs4_fp32": (None, "original loop, batch 4, fp32"),
    "bgem3_reference": (None, "FlagEmbedding m3, the paper's command"),
    "bgem3_reference_hours_per_epoch": (None, "FlagEmbedding m3, the paper's command"),
}
GPU_ONLY = {"fraction_of_bf16_peak"}  # figures a CPU run has not
# -----------------------------------------------------------------------------


def injected(name, path):
    """A part that fails on purpose, for testing the suite (--inject-failure): it writes a result
    first, then raises, or hangs past its limit."""
    key, end = (("written_before_failure", "raise RuntimeError('failure injected by "
                 "--inject-failure')") if name == "injected_error" else
                ("written_before_hang", "import time; time.sleep(600)"))
    return [sys.executable, "-c",
            f"import json; open({str(path)!r}, 'w').write(json.dumps({{{key!r}: 1.0}})); {end}"]


def environment(smoke):
    import torch
    env = {"device": "cpu", "torch": torch.__version__, "cuda": torch.version.cuda,
           "python": platform.python_version(), "cpus": os.cpu_count()}
    for package in ("transformers", "FlagEmbedding", "pyterrier-dr", "pyterrier-t5"):
        try:
            env[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            env[package] = None
    if torch.cuda.is_available() and not smoke:
        props = torch.cuda.get_device_properties(0)
        env.update(device=props.name, compute_capability=f"{props.major}.{props.minor}",
                   memory_gib=round(props.total_memory / 2**30, 1),
                   cudnn=torch.backends.cudnn.version())
    else:
        env["device"] = f"cpu ({platform.processor() or platform.machine()})"
    return env


def warnings_for(env):
    found = []
    if env["transformers"] and int(env["transformers"].split(".")[0]) >= 5:
        found.append(f"transformers {env['transformers']}: FlagEmbedding 1.4.2 does not import "
                     "under transformers 5 (pyterrier-dr's BGEM3 and the BGE-M3 training "
                     "reference fail); carry a transformers<5 wheel (docs/gpu_suite.md)")
    for module in ("FlagEmbedding", "pyterrier_dr", "pyterrier_t5"):
        if importlib.util.find_spec(module) is None:
            found.append(f"{module} is not installed: the references that need it fail "
                         "(benchmarks/gpu_wheels.txt lists the wheels to carry)")
    return found


def lookup(results, key):
    value = results
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def reference_value(results, key):
    field, label = REFERENCES[key]
    value = lookup(results, key if field is None else f"{key}.{field}")
    return value, label


def figures(name, part, smoke):
    """The part's figures (see FIGURES), each with its reference, ratio and target."""
    rows = []
    for label, key, unit, reference, target in FIGURES[name]:
        if smoke and key.split(".")[-1] in GPU_ONLY:
            continue
        value = lookup(part.get("results", {}), key)
        row = {"part": name, "figure": label, "key": key, "unit": unit,
               "value": value if isinstance(value, (int, float)) else None}
        if reference:
            ref, ref_label = reference_value(part.get("results", {}), reference)
            row.update(reference=ref_label, reference_value=ref, ratio=None)
            if row["value"] and ref is not None:
                row["ratio"] = ref / row["value"] if unit in ("s", "h") else row["value"] / ref
        if target:
            op, number = target
            row["target"] = f"{op[1:]} {number:g}x" if op.startswith("x") else f"{op} {number:g}"
            row["target_met"] = None
            tested = row.get("ratio") if op.startswith("x") else row["value"]
            if tested is not None and not smoke:
                op = op.lstrip("x")
                row["target_met"] = {">=": tested >= number, "<=": tested <= number,
                                     "<": tested < number}[op]
        rows.append(row)
    return rows


def number(value, unit=""):
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if unit in ("pairs/s", "passages/s", "queries/s", "samples/s", "bytes", "tokens") \
            and abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def markdown(report):
    env, suite = report["environment"], report["suite"]
    lines = [f"# GPU suite{' (smoke: tiny models on the CPU)' if suite['smoke'] else ''}: "
             f"{env['device']}, {suite['date']}", "",
             f"torch {env['torch']} (CUDA {env['cuda']}, cuDNN {env.get('cudnn')}), transformers "
             f"{env['transformers']}, FlagEmbedding {env['FlagEmbedding']}, pyterrier-dr "
             f"{env['pyterrier-dr']}, pyterrier-t5 {env['pyterrier-t5']}, Python {env['python']}, "
             f"{env['cpus']} CPUs. Budget {suite['budget_s']} s, this run {suite['wall_s']:.0f} s: "
             f"`{suite['command']}`", ""]
    lines += [f"**Warning:** {w}" for w in report["warnings"]] + ([""] if report["warnings"]
                                                                   else [])
    lines += ["| part | status | seconds | limit (s) | CPU seconds | error |",
              "|---|---|---|---|---|---|"]
    for name, part in report["parts"].items():
        error = (part.get("error") or "").strip().splitlines()
        lines.append(f"| {name} | {part['status']} | {part['seconds']:.0f} | {part['limit_s']:.0f} "
                     f"| {part['cpu_seconds']:.0f} "
                     f"| {error[-1][:200].replace('|', '/') if error else ''} |")
    lines += ["", "| part | figure | ours | unit | reference (same run) | reference's | ratio | "
              "target | met |", "|---|---|---|---|---|---|---|---|---|"]
    for row in report["figures"]:
        met = {True: "yes", False: "**no**", None: ""}[row.get("target_met")]
        ratio = f"{row['ratio']:.2f}x" if row.get("ratio") else ""
        reference = number(row.get("reference_value"), row["unit"]) if "reference" in row else ""
        lines.append(f"| {row['part']} | {row['figure']} | {number(row['value'], row['unit'])} | "
                     f"{row['unit']} | {row.get('reference', '')} | {reference} | {ratio} | "
                     f"{row.get('target', '')} | {met} |")
    failed = {n: p for n, p in report["parts"].items() if p["status"] != "ok"}
    if failed:
        lines += ["", "## Failures"]
        for name, part in failed.items():
            lines += ["", f"### {name}: {part['status']}", "", "```", part.get("error") or "",
                      "```"]
    return "\n".join(lines) + "\n"


def write(path, text):
    partial = path.with_name(f".partial-{os.getpid()}.{path.name}")
    partial.write_text(text)
    os.replace(partial, path)  # a reader never sees half a file


class Part:
    """A part running as its own process group (its children, torchrun's or tokenizer workers,
    share it), stopped at its time limit: SIGTERM, then SIGKILL 10 s later; what is left of the
    group when it ends is killed."""

    def __init__(self, name, command, limit, log, env):
        self.name, self.command, self.limit, self.log = name, command, limit, log
        self.offset = log.tell()
        self.start = time.time()
        self.process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
        self.stopped = None  # when SIGTERM was sent

    def poll(self):
        """None while running; else (status, seconds, CPU seconds of the part's processes,
        error)."""
        pid, wait_status, usage = os.wait4(self.process.pid, os.WNOHANG)
        now = time.time()
        if pid == 0:
            if self.stopped is None and now - self.start > self.limit:
                self.stopped = now
                self._signal(signal.SIGTERM)
            elif self.stopped is not None and now - self.stopped > 10:
                self._signal(signal.SIGKILL)
            return None
        self.process.returncode = os.waitstatus_to_exitcode(wait_status)
        self._signal(signal.SIGKILL)  # what it left behind in its group (GPU memory with it)
        status = ("timed out" if self.stopped is not None else
                  "ok" if self.process.returncode == 0 else "failed")
        error = None
        if status != "ok":
            self.log.flush()
            with open(self.log.name, errors="replace") as read:
                read.seek(self.offset)
                tail = read.read().splitlines()[-30:]
            error = (f"stopped at its limit of {self.limit:.0f} s; " if status == "timed out" else
                     f"exit status {self.process.returncode}; ") + "the end of its output:\n" + \
                "\n".join(tail)
        return status, now - self.start, usage.ru_utime + usage.ru_stime, error

    def _signal(self, sig):
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


def main():
    install_handler("gpu_suite.py")
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny models on the CPU: a check that every part runs and reports")
    parser.add_argument("--parts", default="", help="parts to run, comma-separated, of " +
                        ", ".join(PARTS) + " (default: all, in that order)")
    parser.add_argument("--budget", type=float, default=0,
                        help=f"seconds for the whole suite (default {BUDGET_S} on a GPU; "
                        f"{SMOKE_PART_S} per part with --smoke)")
    parser.add_argument("--out", default="",
                        help="path prefix of the .json, .md and .log written (default "
                        "benchmarks/results/gpu_suite, or gpu_suite_smoke with --smoke)")
    parser.add_argument("--overwrite", action="store_true",
                        help="measure the chosen parts again even where the results hold them")
    parser.add_argument("--jobs", type=int, default=0,
                        help="parts run side by side (default 1 on a GPU, where they would "
                        "disturb each other's timings; 2 with --smoke)")
    parser.add_argument("--inject-failure", action="store_true",
                        help="first run two parts that fail on purpose (one raises, one hangs "
                        "past its limit): for testing that a failure stops nothing else")
    args = parser.parse_args()
    chosen = args.parts.split(",") if args.parts else list(PARTS)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)}; choose among {', '.join(PARTS)}")
    out = Path(args.out or HERE / "results" / ("gpu_suite_smoke" if args.smoke else "gpu_suite"))
    json_path, md_path, log_path = (out.with_name(out.name + suffix)
                                    for suffix in (".json", ".md", ".log"))
    env = environment(args.smoke)
    if not args.smoke and env["device"].startswith("cpu"):
        parser.error("no GPU here: --smoke runs the suite's check on the CPU")
    shares = {name: (SMOKE_PART_S if args.smoke else PARTS[name][3]) for name in chosen}
    if args.inject_failure:
        shares.update(injected_error=30, injected_timeout=INJECTED_TIMEOUT_S)
    budget = args.budget or (sum(shares.values()) if args.smoke else BUDGET_S)

    report = {"suite": {"smoke": args.smoke, "budget_s": budget, "wall_s": 0.0,
                        "date": time.strftime("%Y-%m-%d"),
                        "command": " ".join(["python", "benchmarks/gpu_suite.py", *sys.argv[1:]])},
              "environment": env, "warnings": warnings_for(env), "parts": {}, "figures": []}
    if json_path.exists():
        old = json.loads(json_path.read_text())
        same = (old["environment"]["device"], old["suite"]["smoke"]) == (env["device"], args.smoke)
        if not same and not args.overwrite:
            raise UserError(f"{json_path} holds results of {old['environment']['device']} "
                            f"(smoke: {old['suite']['smoke']}), not of this {env['device']}: "
                            "choose another --out, or --overwrite to replace them")
        if same:
            report["parts"] = {n: p for n, p in old["parts"].items()
                               if n in PARTS and (n not in chosen or
                                                  (p["status"] == "ok" and not args.overwrite))}
            for name in report["parts"]:
                print(f"{name}: kept from {json_path} ({report['parts'][name]['status']})"
                      + (" (--overwrite measures it again)" if name in chosen else ""), flush=True)
    todo = [n for n in chosen if n not in report["parts"]]
    if args.inject_failure:
        todo = ["injected_error", "injected_timeout"] + todo

    child_env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    if args.smoke:  # the check runs on the CPU, GPU or not, one thread a process: tiny models
        # gain nothing from more, and threads that wait for each other crawl on a busy machine
        child_env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    jobs = args.jobs or (2 if args.smoke else 1)
    start = STARTED
    out.parent.mkdir(parents=True, exist_ok=True)

    def record(name, part, outcome):
        status, seconds, cpu, error = outcome
        results_path = Path(tmp) / f"{name}.json"
        report["parts"][name] = {
            "status": status, "seconds": seconds, "limit_s": part.limit if part else 0.0,
            "cpu_seconds": cpu, "command": " ".join(part.command[1:]) if part else "",
            "error": error,
            "results": json.loads(results_path.read_text()) if results_path.exists() else {}}
        print(f"  {name}: {status} in {seconds:.0f} s ({cpu:.0f} s of CPU)" +
              (f": {error.splitlines()[-1][:200]}" if error else ""), flush=True)
        if part and part.log is not log:  # a part's own log (parts side by side), appended
            part.log.close()
            log.write(Path(part.log.name).read_text(errors="replace"))
            log.flush()
        report["suite"]["wall_s"] = time.time() - start
        order = [n for n in ["injected_error", "injected_timeout", *PARTS] if n in report["parts"]]
        report["parts"] = {n: report["parts"][n] for n in order}
        report["figures"] = [row for n in order for row in
                             figures(n, report["parts"][n], args.smoke)]
        write(json_path, json.dumps(report, indent=1))
        write(md_path, markdown(report))

    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp, \
            open(log_path, "a" if report["parts"] else "w") as log:
        child_env["BENCH_MODEL_CACHE"] = tmp  # the parts share the models they build
        pending, running = list(todo), []
        while pending or running:
            while pending and len(running) < jobs:
                name = pending.pop(0)
                left = budget - (time.time() - start)
                # one at a time: its share plus what the parts before it left unused, as long
                # as the parts after it keep theirs; side by side: its share
                limit = min(left - sum(shares[n] for n in pending) if jobs == 1 and
                            not name.startswith("injected_") else shares[name], left)
                if name.startswith("injected_"):
                    command = injected(name, Path(tmp) / f"{name}.json")
                else:
                    script, gpu_args, smoke_args, _ = PARTS[name]
                    command = [sys.executable, str(HERE / script),
                               *map(str, smoke_args if args.smoke else gpu_args),
                               "--out", str(Path(tmp) / f"{name}.json")]
                print(f"[{len(todo) - len(pending)}/{len(todo)}] {name}: limit {limit:.0f} s",
                      flush=True)
                if limit < 1:
                    record(name, None, ("timed out", 0.0, 0.0, "no time left in the budget"))
                    continue
                part_log = log if jobs == 1 else open(Path(tmp) / f"{name}.log", "w")
                part_log.write(f"\n===== {name}: {' '.join(command)} (limit {limit:.0f} s)\n")
                part_log.flush()
                running.append(Part(name, command, limit, part_log, child_env))
            time.sleep(0.2)
            for part in list(running):
                outcome = part.poll()
                if outcome:
                    running.remove(part)
                    record(part.name, part, outcome)
    if not todo:
        print("every chosen part is in the results already (--overwrite measures again)")
    print(f"wrote {json_path}, {md_path} and {log_path} in {time.time() - start:.0f} s",
          flush=True)
    failed = [n for n, p in report["parts"].items() if p["status"] != "ok"]
    if failed:
        print(f"failed: {', '.join(failed)} (errors in {md_path})", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
