import gzip
import io
import tarfile

import pytest

from crossvariety.data import flores, pairs
from crossvariety import settings
from crossvariety.data.datasets import Dataset, read_queries
from crossvariety.errors import UserError
from crossvariety.data.pairs import PAIRS


def script_namespace(**constants):
    return {"__file__": "/x/run_mmarco.py", "__doc__": "doc", **constants}


def test_config_then_flags_override_constants(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[paths]\nruns_dir = "out/runs"\n[run_mmarco]\npairs = ["af-dt"]\n'
                      'num_results = 100\nevaluate = true\n[evaluate]\nformat = "latex"\n')
    ns = script_namespace(PAIRS=["ca-fr"], NUM_RESULTS=1000, EVALUATE=False, MODEL="bm25")
    help = {"PAIRS": "p", "NUM_RESULTS": "n", "EVALUATE": "e", "MODEL": "m"}
    paths = settings.configure(ns, help, argv=["--config", str(config), "--num-results", "10"])
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
        settings.configure(script_namespace(NUM_RESULTS=1000), {"NUM_RESULTS": "n"},
                           argv=["--config", str(config)])


def test_every_constant_needs_a_help_line():
    with pytest.raises(RuntimeError, match="constants without a help line"):
        settings.configure(script_namespace(A=1, B=2), {"A": "a"}, argv=[])


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
            assert set(values) <= set(settings.script_defaults(table)), f"{config}: [{table}]"
