"""A test-only way to run a stage script without paying for Python's start-up and the heavy
imports each time: a server process imports torch, transformers, PyTerrier and the package
once, then runs each script in a fork of itself, as ``python script.py ARGS`` would run it
(its own working directory, argv, stdin closed, stdout and stderr to files, the exit status
Python would give, atexit handlers run).

What a fork cannot do like a fresh interpreter: see environment variables that modules read
when they are imported (HF_HUB_CACHE, IR_DATASETS_HOME, ...) if they differ from the server's,
and start torch.distributed. Variables read when they are used (a proxy, FLORES_DIR) are set in
the fork, and HF_HUB_CACHE in the two libraries that read it at import. conftest.run_script launches those, and each script's --help, as
real subprocesses.

Run as ``python launcher.py``: requests are JSON lines on stdin ({"script", "args", "cwd",
"stdout", "stderr", "env"}); for each the server answers {"pid"} once the fork runs, then {"status"}.
"""
import json
import os
import sys


def preload():
    """What the scripts import, so that a fork finds it loaded. Nothing here may run a torch
    operation (its OpenMP pool would not survive a fork); the threads that the imports start
    (OpenBLAS's pools, pyarrow's jemalloc) prepare for forks themselves (pthread_atfork)."""
    import matplotlib
    matplotlib.use("Agg")
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import scipy.stats  # noqa: F401
    import torch  # noqa: F401
    import transformers
    import transformers.modeling_utils  # noqa: F401
    import transformers.generation  # noqa: F401  (pulls scikit-learn)
    from transformers.models.mt5 import modeling_mt5  # noqa: F401
    from transformers.models.xlm_roberta import modeling_xlm_roberta  # noqa: F401
    from transformers.models.xmod import modeling_xmod  # noqa: F401
    transformers.AutoTokenizer, transformers.AutoModel  # noqa: B018  (resolve the lazy names)
    import ir_datasets  # noqa: F401
    import ir_measures  # noqa: F401
    import pyterrier  # noqa: F401
    import pyterrier_dr  # noqa: F401
    import pyterrier_pisa  # noqa: F401
    import crossvariety
    for name in ("families.analysis", "families.bm25", "neural.chunks", "families.colbert",
                 "data.datasets", "families.dense", "report.evaluation", "report.figures",
                 "data.negatives", "report.paper", "families.plaid", "data.released", "rerank.monot5",
                 "families.bgem3", "families.colbertxm", "runs", "settings", "neural.training", "data.translation"):
        __import__(f"crossvariety.{name}")
    assert crossvariety


def run(request):
    """In the forked child: run the script as __main__, then leave with Python's status."""
    import atexit
    import logging
    import runpy
    os.chdir(request["cwd"])
    env = request.get("env") or {}
    os.environ.update(env)
    if "HF_HUB_CACHE" in env:  # read at import by huggingface_hub and transformers: set both
        import huggingface_hub.constants
        import transformers.utils.hub
        huggingface_hub.constants.HF_HUB_CACHE = env["HF_HUB_CACHE"]
        transformers.utils.hub.TRANSFORMERS_CACHE = env["HF_HUB_CACHE"]
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    logging.root.handlers.clear()  # as a fresh interpreter: the script's basicConfig applies
    script = request["script"]
    sys.argv = [script, *request["args"]]
    sys.path[0] = os.path.dirname(script)
    status = 0
    try:
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit:
            raise
        except BaseException:
            sys.excepthook(*sys.exc_info())  # the project's hook exits with a UserError's status
            status = 1
    except SystemExit as e:
        if e.code is None:
            status = 0
        elif isinstance(e.code, int):
            status = e.code
        else:
            print(e.code, file=sys.stderr)
            status = 1
    try:
        import threading
        threading._shutdown()  # as the interpreter does at exit: join non-daemon threads
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(status)


def serve():
    preload()
    answer = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the server's own noise (warnings of the imports) goes nowhere
    os.dup2(devnull, 2)
    answer.write(json.dumps({"ready": True}) + "\n")
    answer.flush()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            answer.close()
            run(request)
        answer.write(json.dumps({"pid": pid}) + "\n")
        answer.flush()
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        answer.write(json.dumps({"status": code}) + "\n")
        answer.flush()


if __name__ == "__main__":
    serve()
