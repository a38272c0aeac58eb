"""A newcomer's first hour (issue 23): a fresh copy of the repository, with no ../shared beside it,
no network and no HF_HUB_OFFLINE, runs the README's main job and make_tables command, read from
the README's own text (so the README cannot drift from what the code does); the main job is quiet;
a model that is neither cached nor reachable fails in one line within seconds."""
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, read_table, run_script

README = REPO / "README.md"
PROXIES = ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY")
# no network (a proxy nobody listens on), no FLORES_DIR, HF_HUB_OFFLINE not set (conftest sets 1)
NO_NETWORK = {**{p: "http://127.0.0.1:9" for p in PROXIES}, "FLORES_DIR": "",
              "HF_HUB_OFFLINE": "0"}


def readme_commands():
    """The README's command blocks marked "tested", as argument lists: continuation lines joined,
    comments dropped, ``.venv/bin/python`` left out."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"<!-- tested: [^>]*-->\n```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words:
                assert words[0] == ".venv/bin/python", line
                commands.append(words[1:])
    return commands


def readme_table():
    """The rows of the table the README says the main job prints."""
    text = README.read_text(encoding="utf-8")
    after = text.split("<!-- the table the main job prints -->\n", 1)[1]
    return [line for line in after.split("\n\n", 1)[0].splitlines() if line.startswith("|")]


def fresh_copy(folder):
    """The files a clone of the repository holds (with this checkout's uncommitted changes), in
    ``folder``/clone: nothing beside it, so no ../shared."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    clone = folder / "clone"
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file() and not source.is_symlink():  # the .venv link is no file of a clone
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    assert not (folder / "shared").exists()
    return clone


def test_the_readme_main_job_on_a_fresh_copy(tmp_path):
    commands = readme_commands()
    assert [c[0] for c in commands] == ["run_mmarco.py", "make_tables.py", "evaluate.py"]
    clone = fresh_copy(tmp_path)
    # the main job in a fresh interpreter: the copy's own package, which finds no ../shared; the
    # commands after it read only the copy's runs and data (a fork of the pre-imported server)
    main = run_script(clone / commands[0][0], *commands[0][1:], cwd=clone, env=NO_NETWORK,
                      fork=False)
    tables, evaluated = [run_script(args[0], *args[1:], cwd=clone, env={
        k: v for k, v in NO_NETWORK.items() if k != "HF_HUB_OFFLINE"}) for args in commands[1:]]

    # the main job: the README's table to the digit, from the shipped FLORES copy, quietly
    assert [line for line in main.stdout.splitlines() if line.startswith("|")] == readme_table()
    assert "p Bonferroni-corrected over the pair's other query sets" in main.stdout
    errors = main.stderr.splitlines()
    assert len(errors) <= 15 and "Traceback" not in main.stderr, main.stderr
    assert sum("queries with no results" in line for line in errors) == 1
    assert not (clone / "data" / "flores200-devtest").exists()  # nothing was downloaded

    # make_tables: the same values, significance and p-values; the chart is written
    table = read_table(main.stdout)
    for pair in ("ca-fr", "yue-zh", "gd-en"):
        variety, highres = pair.split("-")
        rows = [[c.strip() for c in line.split("|")[4:8]] for line in tables.stdout.splitlines()
                if line.startswith(f"| {pair} |")]
        assert rows == [[table[f"{pair} q-{q}"][m] for m in ("MRR@10", "MRR@10 p", "R@1000",
                                                               "R@1000 p")]
                        for q in (highres, variety)]
    assert "† = differs from the high-resource queries of the same pair" in tables.stdout
    runs = clone / "runs" / "flores"
    for name in ("flores_bm25.MRR@10.png", "flores_bm25.MRR@10.pdf", "flores_bm25.table.md",
                 "flores_bm25.table.csv", "flores_bm25.table.tex"):
        assert (runs / name).is_file(), name
    catalan = table["ca-fr q-ca"]  # evaluate.py of the same run: the main job's numbers
    assert f"| Catalan | 1012 | {catalan['MRR@10']} | {catalan['MRR@10 p']} | " \
           f"{catalan['R@1000']} | {catalan['R@1000 p']} |" in evaluated.stdout

    # -q: the table alone (the runs are reused)
    quiet = run_script("run_mmarco.py", "--config", clone / "configs" / "flores_bm25.toml", "-q",
                       cwd=clone)
    assert quiet.stderr == "" and quiet.stdout == main.stdout


def test_make_tables_with_no_run_is_one_line(tmp_path):
    proc = run_script("make_tables.py", "--config", REPO / "configs" / "flores_bm25.toml",
                      "--runs-dir", tmp_path / "nothing", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"make_tables.py: no run file of flores_bm25 exists yet (looked in {tmp_path / 'nothing'}"
        f"); make them first: python run_mmarco.py --config {REPO / 'configs' / 'flores_bm25.toml'}"]


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`script.py | head`: the reader goes away, the script ends with no traceback (141)."""
    code = ("from crossvariety.errors import install_handler; install_handler('x.py')\n"
            "for i in range({}): print('| row |', i)")
    for rows in (3, 100_000):  # the table fits the buffer (flushed at exit), or it does not
        proc = subprocess.Popen([sys.executable, "-c", code.format(rows)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.close()  # the reader stops before the first line
        assert proc.wait(timeout=60) in (0, 141) and proc.stderr.read() == b"", rows


class Blackhole:
    """A proxy that accepts connections and never answers: what a firewall that drops packets
    looks like to a client (huggingface_hub's requests then wait for their timeouts)."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.socket.accept()[0])
            except OSError:
                return

    def close(self):
        for conn in self.held:
            conn.close()
        self.socket.close()


def test_an_unreachable_hub_fails_in_one_line_within_seconds(tmp_path):
    """No network (a proxy that never answers), the model not cached, HF_HUB_OFFLINE not set:
    one line, exit 1, in seconds, before any work (the old path waited on a request with no
    timeout)."""
    hole = Blackhole()
    env = {**NO_NETWORK, **{p: hole.url for p in PROXIES}, "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    start = time.time()
    try:
        proc = run_script("run_mmarco.py", "--benchmark", "flores", "--pairs", "ca-fr", "--model",
                          "bge-m3", cwd=tmp_path, env=env, check=False, fork=False)
    finally:
        hole.close()
    seconds = time.time() - start
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "run_mmarco.py: cannot load model BAAI/bge-m3: not in the local Hugging Face cache and "
        "the hub cannot be reached (ReadTimeout); run this once where the hub can be reached "
        "(only the files it loads are fetched) or pass a local folder"], proc.stderr
    assert seconds < 20, seconds  # a 3 s probe and the imports; generous for a busy machine
    assert not (tmp_path / "data").exists()  # failed before building anything
