"""Nothing runs from a downloaded or handed-over file, and downloads are verified: the
cross-encoder score pickle is read by a restricted unpickler, training checkpoints with
torch.load(weights_only=True), and every download is checked against its SHA-256."""
import gzip
import hashlib
import http.server
import io
import os
import pickle
import re
import subprocess
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CA_TRAIN_QUERIES, REPO, run_script
from crossvariety.neural import checkpoints
from crossvariety.data import downloads, flores, negatives, released
from crossvariety.errors import UserError


class RunsCode:
    """An object whose unpickling calls ``call(*args)``: what a tampered file would hold."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


def gz_pickle(path, obj, protocol=pickle.DEFAULT_PROTOCOL):
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


# -- the cross-encoder score pickle --------------------------------------------------------------

@pytest.mark.parametrize("call", ["os.system", "builtins.exec", "subprocess.call"])
def test_a_score_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, call):
    marker = tmp_path / "marker"
    payload = {"os.system": RunsCode(os.system, f"touch {marker}"),
               "builtins.exec": RunsCode(exec, f"open({str(marker)!r}, 'w').close()"),
               "subprocess.call": RunsCode(subprocess.call, ["touch", str(marker)])}[call]
    path = gz_pickle(tmp_path / "scores.pkl.gz", {1: {2: 0.5, 3: payload}})
    with pytest.raises(UserError) as error:
        negatives.read_ce_scores(path)
    refused = {"os.system": f"{os.system.__module__}.system"}.get(call, call)
    assert re.fullmatch(rf"{re.escape(str(path))}: refused to load {re.escape(refused)} from this "
                        r"pickle: .*delete it to fetch the real one again", one_line(error))
    assert not marker.exists()


def test_the_script_refuses_it_in_one_line(workdir, tmp_path):
    marker = tmp_path / "marker"
    evil = gz_pickle(tmp_path / "ce.pkl.gz", {1001: RunsCode(os.system, f"touch {marker}")})
    hard = tmp_path / "hard.jsonl.gz"
    with gzip.open(hard, "wt") as f:
        f.write('{"qid": 1001, "pos": [0], "neg": {"bm25": [5]}}\n')
    (workdir / "data" / "translations" / "mmarco-v2-fr-train.ca.tsv").write_text(
        "".join(f"{q}\t{t}\n" for q, t in CA_TRAIN_QUERIES.items()))
    proc = run_script("mine_negatives.py", "--pair", "ca-fr", "--hard-negatives", hard,
                      "--ce-scores", evil, cwd=workdir, check=False)
    assert proc.returncode == 1 and not marker.exists()
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mine_negatives.py: {evil}: refused to load "
                           f"{os.system.__module__}.system")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_the_real_structure_loads_exactly(tmp_path, protocol):
    # scores[qid][pid] -> score with int ids (train_bi-encoder_mnrl.py indexes it with the int
    # ids of the hard-negative file); scores as CrossEncoder.predict gives them (numpy float32),
    # or float64 / Python floats
    scores = {1001: {0: np.float32(5.123), 5: np.float32(-1.75)},
              1002: {1: np.float64(0.1), 4: -3.0}}
    path = gz_pickle(tmp_path / "scores.pkl.gz", scores, protocol)
    assert negatives.read_ce_scores(path) == {
        "1001": {"0": float(np.float32(5.123)), "5": -1.75}, "1002": {"1": 0.1, "4": -3.0}}
    # a pickle written under numpy 1.x names numpy.core.multiarray, not numpy._core
    raw = pickle.dumps(scores, protocol=protocol)
    if protocol < 4:
        old = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    else:  # one FRAME (8-byte length after PROTO) holds it all: one byte shorter
        assert raw[2] == pickle.FRAME[0] and raw.count(b"numpy._core.multiarray") == 1
        body = raw[11:].replace(b"\x16numpy._core.multiarray", b"\x15numpy.core.multiarray")
        old = raw[:3] + len(body).to_bytes(8, "little") + body
    assert old != raw
    with gzip.open(tmp_path / "old.pkl.gz", "wb") as f:
        f.write(old)
    assert negatives.read_ce_scores(tmp_path / "old.pkl.gz") == negatives.read_ce_scores(path)


@pytest.mark.parametrize("value, refused", [
    (np.array([1.0, 2.0]), "numpy._core.multiarray._reconstruct"),  # an array, not a score
    (np.int64(3), "numpy.dtype('i8')"),
    (RunsCode(np.dtype, "O"), "numpy.dtype('O')")])
def test_other_numpy_objects_are_refused(tmp_path, value, refused):
    path = gz_pickle(tmp_path / "scores.pkl.gz", {1: {2: value}})
    with pytest.raises(UserError, match=re.escape(f"refused to load {refused}")):
        negatives.read_ce_scores(path)


def test_a_score_file_of_another_shape_is_one_line(tmp_path):
    with pytest.raises(UserError) as error:
        negatives.read_ce_scores(gz_pickle(tmp_path / "list.pkl.gz", [1.0, 2.0]))
    assert "not a {qid: {pid: score}} table" in one_line(error)
    (tmp_path / "plain.pkl.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError) as error:
        negatives.read_ce_scores(tmp_path / "plain.pkl.gz")
    assert "not gzip data, though named .gz; delete it" in one_line(error)
    (tmp_path / "junk.pkl.gz").write_bytes(gzip.compress(b"not a pickle"))
    with pytest.raises(UserError) as error:
        negatives.read_ce_scores(tmp_path / "junk.pkl.gz")
    assert "not a readable cross-encoder score pickle" in one_line(error)


# -- training checkpoints ------------------------------------------------------------------------

def train_steps(model, optimizer, scheduler, steps):
    for _ in range(steps):
        loss = torch.nn.functional.dropout(model(torch.ones(4, 3)), 0.5).square().mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def trainer(seed=0):
    from transformers import get_linear_schedule_with_warmup
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, optimizer, get_linear_schedule_with_warmup(optimizer, 2, 20)


def test_a_checkpoint_loads_without_pickled_code_and_resumes_bitwise(tmp_path):
    cpu = torch.device("cpu")
    model, optimizer, scheduler = trainer()
    train_steps(model, optimizer, scheduler, 3)

    def save_model(folder):
        folder.mkdir()
        torch.save(model.state_dict(), folder / "model.pt")

    checkpoints.save(tmp_path, 3, save_model, optimizer, scheduler, cpu)
    train_steps(model, optimizer, scheduler, 4)  # straight on (dropout draws from the RNG)

    resumed, optimizer, scheduler = trainer(seed=1)  # other weights and RNG until restored
    folder = checkpoints.saved(tmp_path)[-1]
    resumed.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    assert checkpoints.restore(folder, optimizer, scheduler, cpu) == 3
    train_steps(resumed, optimizer, scheduler, 4)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  resumed.state_dict().values()))


class Unexpected:
    pass


@pytest.mark.parametrize("extra, refused", [
    (Unexpected(), f"{__name__}.Unexpected"),
    ("code", f"{os.system.__module__}.system")])
def test_a_checkpoint_with_an_unexpected_class_is_refused(tmp_path, extra, refused):
    marker = tmp_path / "marker"
    if extra == "code":
        extra = RunsCode(os.system, f"touch {marker}")
    model, optimizer, scheduler = trainer()
    folder = tmp_path / "run.checkpoints" / "step-5"
    folder.mkdir(parents=True)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(), "step": 5, "extra": extra}, folder / "trainer.pt")
    with pytest.raises(UserError) as error:
        checkpoints.restore(folder, optimizer, scheduler, torch.device("cpu"))
    assert one_line(error).startswith(f"{folder / 'trainer.pt'}: refused to load {refused}: ")
    assert f"delete {folder} to resume from the checkpoint before it" in one_line(error)
    assert not marker.exists()
    (folder / "trainer.pt").write_bytes(b"truncated")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        checkpoints.restore(folder, optimizer, scheduler, torch.device("cpu"))


# -- downloads -----------------------------------------------------------------------------------

class Server:
    """A local web server: /file.gz answers with BODY; /lfs/file.gz redirects there the way the
    Hugging Face hub does, stating the file's SHA-256 in X-Linked-Etag."""
    BODY = b"the published bytes\n" * 100

    def __init__(self, linked_etag):
        served = self
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                served.requests.append(self.path)
                if self.path.startswith("/lfs/"):
                    self.send_response(302)
                    self.send_header("Location", "/file.gz")
                    self.send_header("X-Linked-Etag", f'"{linked_etag}"')
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(served.BODY)))
                self.end_headers()
                self.wfile.write(served.BODY)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    started = Server(hashlib.sha256(Server.BODY).hexdigest())
    yield started
    started.close()


def test_a_download_records_its_sha256_and_a_tampered_copy_is_refused(tmp_path, server):
    path = tmp_path / "data" / "msmarco-hard-negatives.jsonl.gz"
    digest = hashlib.sha256(Server.BODY).hexdigest()
    assert downloads.local_copy(path, f"{server.url}/file.gz") == path
    assert path.read_bytes() == Server.BODY
    record = path.with_name(path.name + ".sha256")
    assert record.read_text() == f"{digest}  {path.name}\n"  # as sha256sum writes it
    assert subprocess.run(["sha256sum", "-c", record.name], cwd=path.parent,
                          capture_output=True).returncode == 0
    assert downloads.local_copy(path, f"{server.url}/file.gz") == path  # reused, checked
    assert server.requests == ["/file.gz"]

    path.write_bytes(Server.BODY[:-1] + b"!")  # damaged, or replaced
    with pytest.raises(UserError) as error:
        downloads.local_copy(path, f"{server.url}/file.gz")
    assert re.fullmatch(rf"{re.escape(str(path))}: its SHA-256 is [0-9a-f]{{16}}\.\.\., not "
                        rf"{digest[:16]}\.\.\. as recorded in {record.name} when it was "
                        rf"downloaded; .*: delete it and {record.name} to fetch it again",
                        one_line(error))
    path.unlink()  # the fix, even when the record stays behind
    assert downloads.local_copy(path, f"{server.url}/file.gz") == path
    assert path.read_bytes() == Server.BODY and record.read_text().startswith(digest)


def test_the_publishers_checksum_is_checked_and_a_mismatch_keeps_nothing(tmp_path, server):
    path = tmp_path / "scores.pkl.gz"
    downloads.local_copy(path, f"{server.url}/lfs/file.gz")  # the X-Linked-Etag matches
    assert path.read_bytes() == Server.BODY and server.requests == ["/lfs/file.gz", "/file.gz"]
    wrong = Server("0" * 64)
    try:
        with pytest.raises(UserError) as error:
            downloads.local_copy(tmp_path / "other.pkl.gz", f"{wrong.url}/lfs/file.gz")
    finally:
        wrong.close()
    assert "not 0000000000000000... as its publisher states" in one_line(error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.pkl.gz", "scores.pkl.gz.sha256"]


def test_a_tampered_flores_download_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("FLORES_DIR", raising=False)
    monkeypatch.setattr(flores, "SHARED_COPY", tmp_path / "no-shared-copy")
    monkeypatch.setattr(flores, "EMBEDDED", tmp_path / "no-shipped-copy")
    archive = tmp_path / "flores200_dataset.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in [("flores200_dataset/devtest/fra_Latn.devtest", "Un.\n"),
                           ("flores200_dataset/devtest/cat_Latn.devtest", "U.\n"),
                           ("flores200_dataset/metadata_devtest.tsv", "URL\nhttp://a\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    found, _ = flores.find_flores(None, tmp_path / "data", ["fr", "ca"], url=archive.as_uri())
    assert (found / "flores200_dataset.tar.gz.sha256").read_text() == \
        f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  flores200_dataset.tar.gz\n"
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=found,
                          capture_output=True).returncode == 0
    assert flores.find_flores(None, tmp_path / "data", ["fr", "ca"])[0] == found  # reused
    with gzip.open(found / "cat_Latn.devtest.gz", "wt") as f:
        f.write("Altres.\n")
    with pytest.raises(UserError) as error:
        flores.find_flores(None, tmp_path / "data", ["fr", "ca"])
    assert one_line(error).startswith(f"{found / 'cat_Latn.devtest.gz'}: its SHA-256 is ")
    assert one_line(error).endswith(f"delete {found} to fetch FLORES-200 again")


def hub_file(cache, repo, filename, content, lfs):
    """A file in the Hugging Face cache's real layout: the bytes in blobs/{checksum} (SHA-256
    of an LFS file, git blob SHA-1 of a small one), a symlink in snapshots/{commit}/."""
    folder = Path(cache) / f"datasets--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    etag = hashlib.sha256(content).hexdigest() if lfs else \
        hashlib.sha1(f"blob {len(content)}\0".encode() + content).hexdigest()
    blob = folder / "blobs" / etag
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content)
    link = folder / "snapshots" / commit / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    return blob


@pytest.mark.parametrize("lfs", [True, False])
def test_a_tampered_file_of_the_hub_cache_is_refused(tmp_path, monkeypatch, lfs):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    name = released.TRAINING_FILES["ca-fr"]
    blob = hub_file(tmp_path, released.REPO, name, b'{"query": "q", "pos": ["p"]}\n', lfs)
    if not lfs:  # the git blob id is git's own
        assert blob.name == subprocess.run(["git", "hash-object", str(blob)], capture_output=True,
                                           text=True).stdout.strip()
    assert released.resolve("paper:ca-fr", "training").endswith(name)
    blob.write_bytes(b'{"query": "q", "pos": ["tampered"]}\n')
    with pytest.raises(UserError) as error:
        released.resolve("paper:ca-fr", "training")
    assert re.search(r": its SHA-256 is [0-9a-f]{16}\.\.\., not .* as the Hugging Face cache "
                     rf"names it \(its hub checksum\); .*: delete {re.escape(str(blob))} to fetch "
                     "it again$", one_line(error))


def test_models_load_without_trust_remote_code():
    """No Hugging Face model or tokenizer of this project runs code from its repository."""
    sources = [*REPO.glob("*.py"), *(REPO / "crossvariety").rglob("*.py"),
               *(REPO / "benchmarks").glob("*.py")]
    trusting = [f"{p.name}:{n}" for p in sources
                for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                if re.search(r"trust_remote_code\s*=\s*(True|1)", line)]
    assert len(sources) > 30 and trusting == []
