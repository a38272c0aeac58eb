"""Language codes and pairs: the paper's seven built in, any other pair from a config or a name."""
import pytest

from crossvariety.data import languages, pairs
from crossvariety import settings
from crossvariety.errors import UsageError
from crossvariety.data.pairs import get_pairs


@pytest.fixture(autouse=True)
def no_defined_pairs():
    pairs.DEFINED.clear()
    yield
    pairs.DEFINED.clear()


@pytest.mark.parametrize("code, canonical", [
    ("fr", "fr"), ("fra", "fr"), ("fra_Latn", "fr"), ("dt", "nl"), ("zsm_Latn", "ms"),
    ("pes_Arab", "fa"), ("glg_Latn", "gl"), ("ltz", "lb"), ("ast_Latn", "ast"), ("scn", "scn"),
    ("yue_Hant", "yue"), ("FR", "fr"),
])
def test_language_codes(code, canonical):
    assert languages.canonical(code) == canonical


def test_unknown_language_codes():
    for code in ("xx", "french", "fr-FR", ""):
        with pytest.raises(UsageError, match="unknown language"):
            languages.canonical(code)
    assert languages.name("gl") == "Galician" and languages.iso639_3("lb") == "ltz"


def test_the_papers_pairs_are_built_in():
    table = {p.name: p for p in get_pairs(["all"])}
    assert list(table) == ["ca-fr", "oc-fr", "af-dt", "scn-it", "yue-zh", "ms-id", "gd-en"]
    assert table["af-dt"].collection == "irds:mmarco/v2/dt" and table["af-dt"].analyzer == "nl"
    assert table["gd-en"].dev_topics == "irds:msmarco-passage/dev/small"
    assert table["ca-fr"].train_topics == "irds:mmarco/v2/fr/train"
    assert get_pairs(["af-nl"])[0].name == "af-dt"


def test_a_pair_by_name_of_two_language_codes():
    gl_pt, = get_pairs(["gl-pt"])
    assert (gl_pt.variety, gl_pt.highres, gl_pt.analyzer) == ("gl", "pt", "pt")
    assert gl_pt.collection == ""
    by_flores, = get_pairs(["glg_Latn-por_Latn"])
    assert by_flores.name == "gl-pt" and by_flores.flores_variety == "glg_Latn"
    # the languages of a built-in pair give the built-in pair
    assert get_pairs(["cat_Latn-fra_Latn"])[0] is pairs.PAIRS["ca-fr"]
    assert get_pairs(["afr_Latn-nld_Latn"])[0] is pairs.PAIRS["af-dt"]
    for bad, message in [("xx-fr", "unknown language 'xx'"), ("cafr", "named VARIETY-HIGHRES"),
                         ("ca-fr-es", "named VARIETY-HIGHRES")]:
        with pytest.raises(UsageError, match=rf"unknown language pair '{bad}' .*{message}"):
            get_pairs([bad])


def script_namespace(tmp_path):
    """The globals of a script run_mmarco.py (without settings) calling configure."""
    (tmp_path / "run_mmarco.py").write_text("")
    return {"__file__": str(tmp_path / "run_mmarco.py"), "__doc__": ""}


def test_pairs_defined_in_a_config_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[pairs.gl-pt]\ncollection = "data/pt-news"\n'
                      'variety_queries = "q.gl.tsv"\n'
                      '[pairs.lux]\nvariety = "ltz_Latn"\nhighres = "deu_Latn"\n'
                      'collection = "irds:x"\ntopics = "irds:x/dev"\n'
                      '[pairs.ca-fr]\ncollection = "data/my-fr"\n')
    settings.configure(script_namespace(tmp_path),
                       argv=["--config", str(config)])
    table = {p.name: p for p in get_pairs(["all"])}
    assert list(table)[:7] == ["ca-fr", "oc-fr", "af-dt", "scn-it", "yue-zh", "ms-id", "gd-en"]
    gl_pt = table["gl-pt"]
    assert (gl_pt.variety, gl_pt.highres, gl_pt.analyzer) == ("gl", "pt", "pt")
    assert gl_pt.dev_topics == "data/pt-news" and gl_pt.variety_queries == "q.gl.tsv"
    lux = table["lux"]
    assert (lux.variety, lux.highres, lux.analyzer) == ("lb", "de", "de")
    assert lux.dev_topics == "irds:x/dev"
    assert (lux.flores_variety, lux.flores_highres) == ("ltz_Latn", "deu_Latn")
    # a table named after a built-in pair amends it
    assert table["ca-fr"].collection == "data/my-fr" and table["ca-fr"].variety == "ca"
    assert pairs.PAIRS["ca-fr"].collection == "irds:mmarco/v2/fr"
    # the next configure starts from the built-in pairs again
    settings.configure(script_namespace(tmp_path), argv=[])
    assert get_pairs(["ca-fr"])[0].collection == "irds:mmarco/v2/fr"


@pytest.mark.parametrize("text, message", [
    ('[pairs.gl-pt]\ncolection = "x"\n', r"\[pairs.gl-pt\] has unknown key\(s\) colection; "
                                          r"known keys: variety, highres"),
    ('[pairs.mine]\ncollection = "x"\n', r"\[pairs.mine\]: give variety and highres"),
    ('[pairs.gl-pt]\nvariety = "xx"\n', r"\[pairs.gl-pt\] variety: unknown language 'xx'"),
    ('[pairs.gl-pt]\ncollection = 3\n', r"\[pairs.gl-pt\] collection: expected a string"),
    ('pairs = ["gl-pt"]\n', r"stand outside any table"),
    ('[pairz.gl-pt]\nvariety = "gl"\n', r"table\(s\) \[pairz\] name no script"),
    ('[run_mmarc]\npairs = ["ca-fr"]\n', r"table\(s\) \[run_mmarc\] name no script"),
])
def test_bad_pair_tables_name_file_table_and_key(tmp_path, text, message):
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(settings.ConfigError, match=message):
        settings.configure(script_namespace(tmp_path),
                           argv=["--config", str(config)])
