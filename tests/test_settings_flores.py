import gzip
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from crossvariety.data import flores, pairs
from crossvariety import settings
from crossvariety.data.datasets import Dataset, read_queries
from crossvariety.errors import UserError
from crossvariety.data.pairs import PAIRS


def script_namespace(tmp_path, source, name="run_mmarco"):
    """The globals of a script ``{name}.py`` whose top is ``source`` (constants and their
    comments), as they are when it calls settings.configure(globals())."""
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    namespace = {"__file__": str(path), "__doc__": "doc"}
    exec(compile(source, str(path), "exec"), namespace)
    return namespace


RUN_CONSTANTS = ('PAIRS = ["ca-fr"]  # pairs\nNUM_RESULTS = 1000  # depth\n'
                 'EVALUATE = False  # evaluate\nMODEL = "bm25"  # model\n')


def test_config_then_flags_override_constants(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[paths]\nruns_dir = "out/runs"\n[run_mmarco]\npairs = ["af-dt"]\n'
                      'num_results = 100\nevaluate = true\n[evaluate]\nformat = "latex"\n')
    ns = script_namespace(tmp_path, RUN_CONSTANTS)
    paths = settings.configure(ns, argv=["--config", str(config), "--num-results", "10"])
    assert ns["PAIRS"] == ["af-dt"] and ns["EVALUATE"] is True and ns["MODEL"] == "bm25"
    assert ns["NUM_RESULTS"] == 10  # the flag beats the file
    assert str(paths["runs_dir"]) == "out/runs" and str(paths["index_dir"]) == "indexes"
    assert paths["flores_dir"] is None


@pytest.mark.parametrize("text, message", [
    ('[run_mmarco]\nnum_resluts = 5\n', r"c.toml: \[run_mmarco\] has unknown key 'num_resluts'"),
    ('[paths]\nrun_dir = "x"\n', r"c.toml: \[paths\] has unknown key 'run_dir'"),
    ('[run_mmarco]\nnum_results = "five"\n', r"c.toml: \[run_mmarco\] num_results: expected int"),
    ('num_results = 5\n', r"stand outside any table"),
    ('[run_mmarco\n', r"not valid TOML"),
])
def test_config_errors_name_file_and_key(tmp_path, text, message):
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(settings.ConfigError, match=message):
        settings.configure(script_namespace(tmp_path, "NUM_RESULTS = 1000  # n\n"),
                           argv=["--config", str(config)])


def test_every_constant_needs_a_help_comment(tmp_path):
    with pytest.raises(RuntimeError, match=r"constants without a help line.*\['B'\]"):
        settings.configure(script_namespace(tmp_path, "A = 1  # a\nB = 2\n"), argv=[])
    # a comment that looks like a continuation but is not aligned: an error, not a lost line
    with pytest.raises(RuntimeError, match=r"run_mmarco.py:2: .* description of A"):
        settings.configure(script_namespace(tmp_path, "A = 1  # a\n     # more\n"), argv=[])


def test_help_comes_from_the_constants_comments(tmp_path, capsys):
    source = ('import os\n'
              'MODEL = "bm25"  # first-stage ranker: bm25 (PISA, language-aware analysis);\n'
              '                # a BGE-M3 model: bge-m3, ...;\n'
              '                # or an HF id or local path of either\n'
              '# a section comment: not a continuation\n'
              'PAIRS = ["ca-fr",\n'
              '         "af-dt"]  # language pairs, 100% of them\n'
              'RATE = 1e-5  # learning rate\n'
              'CORES = os.cpu_count()  # computed: not a setting\n'
              'settings.configure(globals())\n'
              'LATER = 1  # after configure: not a setting\n')
    path = tmp_path / "run_mmarco.py"
    path.write_text(source)
    assert settings.script_help(path) == {
        "MODEL": "first-stage ranker: bm25 (PISA, language-aware analysis); a BGE-M3 model: "
                 "bge-m3, ...; or an HF id or local path of either",
        "PAIRS": "language pairs, 100% of them",
        "RATE": "learning rate"}
    namespace = {"__file__": str(path), "__doc__": "doc", "MODEL": "bm25",
                 "PAIRS": ["ca-fr", "af-dt"], "RATE": 1e-5, "CORES": 2}
    with pytest.raises(SystemExit) as exit:
        settings.configure(namespace, argv=["--help"])
    assert exit.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--model MODEL first-stage ranker: bm25 (PISA, language-aware analysis); a BGE-M3 " \
           "model: bge-m3, ...; or an HF id or local path of either (default: 'bm25')" in out
    assert "language pairs, 100% of them (default: ca-fr af-dt)" in out
    assert "--rate RATE learning rate (default: 1e-05)" in out
    assert "--cores" not in out and "--later" not in out
    # the paths' help comes from the comments of settings.PATHS
    assert "folder of TREC run files and result tables (default: runs)" in out
    assert "FLORES_DIR FLORES-200 devtest: a folder of {code}.devtest.gz" in out
    assert "else a download of the public release into data_dir" in out


def show_config(*args, cwd):
    """run_mmarco.py's --show-config, in a fresh interpreter; also says whether it imported
    pandas or torch (it must answer before any heavy import)."""
    probe = ("import os, runpy, sys\nsys.argv = sys.argv[1:]\n"
             "sys.path.insert(0, os.path.dirname(sys.argv[0]))\ntry:\n"
             "    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as e:\n"
             "    assert e.code in (0, None), e.code\n"
             "print('heavy' if {'pandas', 'torch'} & set(sys.modules) else 'light')\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(settings.REPO_ROOT / "run_mmarco.py"),
                           *map(str, args), "--show-config"], cwd=cwd, capture_output=True,
                          text=True, check=True)
    shown, _, imported = proc.stdout.rpartition("}")
    assert imported.strip() == "light"
    return json.loads(shown + "}")


def test_show_config_prints_resolved_settings_and_paths(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[paths]\nruns_dir = "out/runs"\n[run_mmarco]\npairs = ["af-dt"]\n'
                      'num_results = 100\nevaluate = true\n[finetune_bgem3]\nepochs = 2\n')
    shown = show_config("--config", config, "--num-results", "10", "--model", "bge-m3",
                        cwd=tmp_path)
    assert shown["script"] == "run_mmarco"
    assert shown["paths"] == {"data_dir": "data", "translations_dir": "data/translations",
                              "index_dir": "indexes", "runs_dir": "out/runs",
                              "models_dir": "models", "flores_dir": None}
    values = shown["settings"]
    assert values["pairs"] == ["af-dt"] and values["evaluate"] is True  # the file
    assert values["num_results"] == 10 and values["model"] == "bge-m3"  # the flags win
    assert values["benchmark"] == "mmarco" and values["measures"] == []  # the defaults
    assert "epochs" not in values

    # experiment_settings asks the script the same way: the same values, as Paths
    paths, values = settings.experiment_settings(config, "run_mmarco")
    shown = show_config("--config", config, cwd=tmp_path)
    assert values == shown["settings"]
    assert {k: str(v) if v else None for k, v in paths.items()} == shown["paths"]
    assert paths["runs_dir"] == Path("out/runs") and paths["flores_dir"] is None
    assert settings.experiment_settings(config, "run_mmarco") == (paths, values)  # cached
    values["pairs"].append("x")  # a caller's changes do not reach the cache
    assert settings.experiment_settings(config, "run_mmarco")[1]["pairs"] == ["af-dt"]
    [(_, many)] = settings.experiment_settings_many([(config, "run_mmarco")])
    assert many["pairs"] == ["af-dt"]


def test_experiment_settings_refuses_what_the_script_refuses(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[run_mmarco]\nnum_resluts = 5\n')
    with pytest.raises(settings.ConfigError,
                       match=rf"^run_mmarco.py: {re.escape(str(config))}: \[run_mmarco\] has "
                             r"unknown key 'num_resluts'; known keys: benchmark, pairs"):
        settings.experiment_settings(config, "run_mmarco")
    config.write_text('[run_mmarco]\nnum_results = -5\n')  # a new version of the file
    with pytest.raises(settings.ConfigError, match=r"num_results = -5: a count must be 1 or more"):
        settings.experiment_settings(config, "run_mmarco")
    with pytest.raises(settings.ConfigError, match=r"nope.toml does not exist"):
        settings.experiment_settings(tmp_path / "nope.toml", "run_mmarco")


def make_flores(directory, sentences_by_code, articles):
    directory.mkdir(parents=True, exist_ok=True)
    for code, sentences in sentences_by_code.items():
        (directory / f"{code}.devtest.gz").write_bytes(
            gzip.compress("".join(s + "\n" for s in sentences).encode()))
    metadata = "URL\tdomain\n" + "".join(f"{url}\twikinews\n" for url in articles)
    (directory / "metadata_devtest.tsv.gz").write_bytes(gzip.compress(metadata.encode()))


def test_build_flores_groups_sentences_into_articles(tmp_path):
    source = tmp_path / "flores"
    make_flores(source, {"fra_Latn": ["Un.", "Deux.", "Trois."],
                         "cat_Latn": ["U.", "Dos.", "Tres."]},
                ["http://a", "http://b", "http://a"])
    dataset_dir, variety_file = flores.build_flores(PAIRS["ca-fr"], source,
                                                    ["fra_Latn", "cat_Latn"], tmp_path / "data",
                                                    tmp_path / "tr")
    ds = Dataset(dataset_dir)
    assert list(ds.docs_iter()) == [{"docno": "a001", "text": "Un. Trois."},
                                    {"docno": "a002", "text": "Deux."}]
    assert ds.qrels().values.tolist() == [["1", "a001", 1], ["2", "a002", 1], ["3", "a001", 1]]
    assert list(ds.queries()["query"]) == ["Un.", "Deux.", "Trois."]
    assert variety_file.name == "flores200-devtest-fr.ca.tsv.gz"
    assert list(read_queries(variety_file)["query"]) == ["U.", "Dos.", "Tres."]
    assert {p.suffix for p in dataset_dir.iterdir()} == {".gz"}  # the licence: keep it gzipped


def test_find_flores_downloads_the_public_release_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("FLORES_DIR", raising=False)
    monkeypatch.setattr(flores, "SHARED_COPY", tmp_path / "no-shared-copy")
    monkeypatch.setattr(flores, "EMBEDDED", tmp_path / "no-shipped-copy")
    archive = tmp_path / "flores200_dataset.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in [("flores200_dataset/devtest/fra_Latn.devtest", "Un.\n"),
                           ("flores200_dataset/devtest/cat_Latn.devtest", "U.\n"),
                           ("flores200_dataset/dev/fra_Latn.dev", "ignored\n"),
                           ("flores200_dataset/metadata_devtest.tsv", "URL\nhttp://a\n")]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    found, codes = flores.find_flores(None, tmp_path / "data", ["fr", "cat_Latn"],
                                      url=archive.as_uri())
    assert found == tmp_path / "data" / "flores200-devtest" and codes == ["fra_Latn", "cat_Latn"]
    assert sorted(p.name for p in found.iterdir()) == [
        "SHA256SUMS", "cat_Latn.devtest.gz", "flores200_dataset.tar.gz.sha256",
        "fra_Latn.devtest.gz", "metadata_devtest.tsv.gz"]  # the checksums: test_safe_loading.py
    with pytest.raises(UserError, match=r"flores_dir .* lacks glg_Latn.devtest.gz; put it in "):
        flores.find_flores(found, tmp_path, ["glg_Latn"])
    # no network, a language the shipped copy lacks: one message that names the file, where it
    # was looked for and where to put it
    with pytest.raises(UserError, match=r"^no glg_Latn.devtest.gz in .*no-shipped-copy, and could "
                                        r"not download FLORES-200 from .* --flores-dir takes"):
        flores.find_flores(None, tmp_path / "elsewhere", ["glg_Latn"],
                           url="http://127.0.0.1:9/x.tar.gz")


def release_layout(folder, sentences_by_code, articles):
    """The FLORES-200 release as published, unpacked: plain devtest/{code}.devtest files and
    metadata_devtest.tsv under flores200_dataset/ (and a dev/ split that is not read)."""
    root = folder / "flores200_dataset"
    (root / "devtest").mkdir(parents=True)
    (root / "dev").mkdir()
    for code, sentences in sentences_by_code.items():
        (root / "devtest" / f"{code}.devtest").write_text("".join(s + "\n" for s in sentences))
        (root / "dev" / f"{code}.dev").write_text("not read\n")
    (root / "metadata_devtest.tsv").write_text("URL\tdomain\n" +
                                               "".join(f"{a}\twiki\n" for a in articles))
    return root


def test_flores_dir_takes_the_official_release(tmp_path, monkeypatch):
    """--flores-dir as the release comes: its unpacked folder, that folder's devtest/ or the folder
    it was unpacked in, and the .tar.gz itself (unpacked gzipped into data_dir); a language it
    lacks gets one line naming the file."""
    monkeypatch.delenv("FLORES_DIR", raising=False)
    root = release_layout(tmp_path / "unpacked", {"fra_Latn": ["Un.", "Deux."],
                                                  "cat_Latn": ["U.", "Dos."]},
                          ["http://a", "http://b"])
    for given in (root, root / "devtest", root.parent):
        found, codes = flores.find_flores(given, tmp_path / "data", ["fr", "ca"])
        assert (found, codes) == (root / "devtest", ["fra_Latn", "cat_Latn"])
        dataset, variety = flores.build_flores(PAIRS["ca-fr"], found, codes,
                                               tmp_path / f"data-{given.name}", tmp_path / "tr")
        assert Dataset(dataset).qrels().values.tolist() == [["1", "a001", 1], ["2", "a002", 1]]
        assert list(read_queries(variety)["query"]) == ["U.", "Dos."]
    with pytest.raises(UserError, match=r"lacks glg_Latn.devtest.gz \(Galician\)|lacks glg_\*"):
        flores.find_flores(root, tmp_path / "data", ["gl", "fr"])
    archive = tmp_path / "flores200_dataset.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="flores200_dataset")
    found, codes = flores.find_flores(archive, tmp_path / "data", ["ca", "fr"])
    assert found == tmp_path / "data" / "flores200-devtest" and codes == ["cat_Latn", "fra_Latn"]
    assert {p.suffix for p in found.glob("*.devtest*")} == {".gz"}  # the licence: gzipped
    assert flores.read_sentences(found, "cat_Latn") == ["U.", "Dos."]
    with pytest.raises(UserError, match=r"flores200_dataset.tar.gz has no glg_Latn.devtest.gz"):
        flores.find_flores(archive, tmp_path / "data", ["glg_Latn", "fr"])


def test_the_shipped_copy_is_the_last_local_resort(tmp_path, monkeypatch):
    """No $FLORES_DIR, no copy beside the repository: the paper's 13 languages come from the
    copy shipped with the code, which is gzipped and matches its SHA256SUMS."""
    monkeypatch.delenv("FLORES_DIR", raising=False)
    monkeypatch.setattr(flores, "SHARED_COPY", tmp_path / "no-shared-copy")
    found, codes = flores.find_flores(None, tmp_path / "data", ["gd", "en"],
                                      url="http://127.0.0.1:9/x.tar.gz")
    assert found == flores.EMBEDDED and codes == ["gla_Latn", "eng_Latn"]
    assert sorted(p.name for p in found.iterdir() if not p.name.endswith(".gz")) == [
        "LICENSE-CC-BY-SA-4.0", "README.md", "SHA256SUMS"]
    assert len(flores.read_sentences(found, "gla_Latn")) == len(flores.read_articles(found)) == 1012


def test_flores_codes_by_language_and_script(tmp_path):
    source = tmp_path / "flores"
    make_flores(source, {"glg_Latn": ["Un."], "por_Latn": ["Um."], "zho_Hans": ["一"],
                         "zho_Hant": ["一"], "srp_Cyrl": ["Ј"], "srp_Latn": ["J"]}, ["http://a"])
    assert flores.flores_code(source, "gl") == "glg_Latn"  # the only Galician file
    assert flores.flores_code(source, "pt") == "por_Latn"
    assert flores.flores_code(source, "zh") == "zho_Hans"  # the project's table decides
    assert flores.flores_code(source, "zho_Hant") == "zho_Hant"
    assert flores.flores_code(source, "de") is None
    with pytest.raises(UserError, match="has Serbian in several scripts"):
        flores.flores_code(source, "sr")


def test_every_config_names_real_scripts_and_settings():
    import tomllib
    configs = sorted((settings.REPO_ROOT / "configs").glob("*.toml"))
    assert configs
    asked = []
    for config in configs:
        tables = tomllib.loads(config.read_text())
        assert set(tables.get("paths", {})) <= set(settings.PATHS), config
        for name, table in tables.get("pairs", {}).items():
            assert set(table) <= set(pairs.FIELDS), f"{config}: [pairs.{name}]"
        for table, values in tables.items():
            if table in ("paths", "pairs"):
                continue
            script = settings.REPO_ROOT / f"{table}.py"
            assert script.is_file(), f"{config}: [{table}] names no script"
            asked.append((config, table))
    # each script reads its table as it would run with it: keys and values (--show-config)
    for (config, table), (_, values) in zip(asked, settings.experiment_settings_many(asked)):
        wanted = tomllib.loads(config.read_text())[table]
        assert {k: values[k] for k in wanted} == wanted, f"{config}: [{table}]"
