"""Beyond the paper's BM25: character n-grams, the uroman script bridge, Lucene's Snowball stop
lists; their labels and records; a romanised pair run end to end on FLORES-like files."""
import gzip
import json

import pytest

from conftest import read_table, run_script
from crossvariety.families import bm25
from crossvariety.families.analysis import Analyzer, consonants, get_analyzer, ngrams, romanizer
from crossvariety.errors import UsageError


def test_character_ngrams_of_hand_checked_words():
    assert ngrams(["casa"], 4) == ["_cas", "casa", "asa_"]
    assert ngrams(["a", "de"], 4) == ["_a_", "_de_"]  # short words stay whole, padded
    assert ngrams(["casa"], 3) == ["_ca", "cas", "asa", "sa_"]
    assert ngrams(["casa"], 5) == ["_casa", "casa_"]
    # accents (NFKC: a decomposed é is one character), case, digits
    assert get_analyzer("fr", ngram=4)("Cafe\u0301 2024") == [
        "_caf", "café", "afé_", "_202", "2024", "024_"]
    # apostrophes: elided articles go, other apostrophes join the word
    assert get_analyzer("ca", ngram=4)("l’aigua") == ["_aig", "aigu", "igua", "gua_"]
    assert get_analyzer("lb", ngram=4)("D’Haiser") == ["_dha", "dhai", "hais", "aise", "iser",
                                                       "ser_"]
    # Cyrillic (Russian folds ё), Devanagari (virama and vowel signs stay in their word)
    assert get_analyzer("ru", ngram=3)("Ёлка") == ["_ел", "елк", "лка", "ка_"]
    assert get_analyzer("hi", ngram=4)("नमस्ते") == ["_नमस", "नमस्", "मस्त", "स्ते", "्ते_"]
    # n-grams analyse plainly: no stop words, no stemming
    assert get_analyzer("fr", ngram=5)("les chats") == ["_les_", "_chat", "chats", "hats_"]


def test_cjk_keeps_its_bigrams_under_ngrams():
    assert get_analyzer("zh", ngram=4)("我们现在") == get_analyzer("zh")("我们现在")
    assert bm25.model_label("zh", ngram=4) == "bm25"
    assert bm25.model_label("yue", "unigrams+bigrams", ngram=4) == "bm25-unibi"
    with pytest.raises(UsageError, match="n-grams of length 6 are not offered"):
        Analyzer("fr", ngram=6)


def test_uroman_output_of_known_strings():
    rom = romanizer()
    assert rom("Добро пожаловать") == "Dobro pozhalovat"
    assert rom("नमस्ते दुनिया") == "namaste duniyaa"
    assert rom("Ελληνικά") == "Ellenika"
    assert get_analyzer("hr", romanize=True)("Đurđevac, Добро!") == ["durdevac", "dobro"]
    assert get_analyzer("ar", romanize=True, ngram=4)("مرحبا") == ["_mrh", "mrhb", "rhba",
                                                                   "hba_"]


# Acehnese in Jawi and in Latin letters (FLORES-200 devtest, sentences 35, 36 and 40, CC BY-SA)
JAWI = ["کنتو ݢوبرنور خن سيکورڠ بله دري ڽڠ چيدرا ناکوه اوق ڤوليسي.",
        "ڤوليسي خن اوق ڽن چوريݢ اورڠ ميليتن دعيش (ايسيل) ڽڠ متڠݢوڠ جواب اتوه سربو ڽن.",
        "لم ڤرجالننجيه، ايواساکي کنوڠ مسئله دالم لى واتى."]
ACEHNESE = ["Kanto gubernur kheun sikureuëng blah dari nyang cidra nakeuh awak pulisi.",
            "Pulisi kheun awak nyan curiga ureuëng militan Daesh (ISIL) nyang meutanggong "
            "jaweueb ataeuh seureubu nyan.",
            "Lam perjalananjih, Iwasaki keunong masalah dalam le watèe."]


def test_consonant_skeletons_of_hand_checked_words():
    assert consonants("kaleuhnyan") == "klhnn"
    assert consonants("watèe") == "wt"  # accents go with their vowels
    assert consonants("ia") == "ia"  # a word of vowels only keeps them
    assert consonants("2017") == "2017"
    skeleton = get_analyzer("ace", romanize="skeleton")
    # uroman writes what Jawi writes, few vowels: its words never equal the Latin spelling's,
    # their skeletons do
    assert romanizer()("مسئله دالم") == "msyelh dalm"
    assert skeleton("مسئله دالم") == skeleton("masalah dalam") == ["mslh", "dlm"]
    roman = get_analyzer("ace", romanize=True)
    assert not set(roman(JAWI[2])) & set(roman(ACEHNESE[2]))
    assert set(skeleton(JAWI[2])) & set(skeleton(ACEHNESE[2])) == {"lm", "l", "mslh", "dlm",
                                                                     "wsk", "wt"}
    assert get_analyzer("ace", romanize="skeleton", ngram=4)("Iwasaki") == ["_wsk", "wsk_"]
    assert skeleton("ia \u0301 ua") == ["ia", "ua"]  # a lone combining mark leaves no term
    with pytest.raises(UsageError, match="unknown romanisation 'vowels'; choose uroman or "
                                         "skeleton"):
        Analyzer("ace", romanize="vowels")


def test_snowball_stop_lists_are_lucenes():
    it = get_analyzer("it")
    assert {"di", "della", "sono", "è"} <= it.stopwords
    assert not {"persone", "lavoro", "nuovo", "grande", "stato"} & it.stopwords
    assert "son" not in get_analyzer("fr").stopwords  # Snowball omits it: homonym of "sound"
    assert {"pada", "kepada"} <= get_analyzer("id").stopwords  # two words on one line
    assert get_analyzer("en")("The computers of the information age") == [
        "comput", "inform", "age"]  # English keeps Lucene's 33 words


def test_labels_and_records_distinguish_the_analyses(tmp_path):
    labels = {(n, r): bm25.model_label("fr", ngram=n, romanize=r)
              for n in (0, 4) for r in (False, True)}
    assert labels == {(0, False): "bm25", (4, False): "bm25-char4", (0, True): "bm25-uroman",
                      (4, True): "bm25-uroman-char4"}
    assert bm25.model_label("ace", ngram=4, romanize="skeleton") == "bm25-uroman-skel-char4"
    assert bm25.model_label("ace", romanize="uroman") == "bm25-uroman"
    docs = [{"docno": "d1", "text": "la casa blanca"}, {"docno": "d2", "text": "el perro"}]
    bm25.build_index(iter(docs), "fr", tmp_path / "idx", workers=1, ngram=4)
    meta = json.loads((tmp_path / "idx" / bm25.META).read_text())
    assert (meta["terms"], meta["romanize"], meta["stops"]) == ("char4", False, "none")
    word = bm25.analysis_record(bm25.analysis.spec("fr"))
    assert (word["terms"], word["stops"]) == ("words", "snowball:french")
    roman = bm25.analysis_record(bm25.analysis.spec("fr", ngram=5, romanize=True))
    assert (roman["terms"], roman["romanize"]) == ("char5", "uroman 1.3.1.1")
    skeleton = bm25.analysis_record(bm25.analysis.spec("ace", ngram=4, romanize="skeleton"))
    assert skeleton["romanize"] == "uroman 1.3.1.1, consonant skeleton"
    for record, spec in ((word, ("fr", None, 0, False)), (roman, ("fr", None, 5, "uroman")),
                         (skeleton, ("ace", None, 4, "skeleton"))):
        assert bm25.recorded_analysis(record) == spec  # what an index's metadata gives back
    # the retriever analyses queries as the index was built: "casas" shares _cas, casa
    import pandas as pd
    res = bm25.bm25_retriever(tmp_path / "idx")(pd.DataFrame({"qid": ["1"], "query": ["casas"]}))
    assert list(res.docno) == ["d1"]


SERBIAN = ["Добро јутро, Београд.", "Киша пада у граду.", "Народна библиотека је затворена."]
CROATIAN = ["Dobro jutro, Beograd.", "Kiša pada u gradu.", "Narodna biblioteka je zatvorena."]


def flores_pair_config(tmp_path, sentences, pair_option):
    """A config running one pair over FLORES-like files of three one-sentence articles:
    ``sentences`` {FLORES code: lines}, variety first; ``pair_option`` the pair table's line."""
    flores = tmp_path / "flores"
    flores.mkdir()
    with gzip.open(flores / "metadata_devtest.tsv.gz", "wt") as f:
        f.write("URL\tdomain\n" + "".join(f"https://a{i}\twiki\n" for i in range(3)))
    for code, lines in sentences.items():
        with gzip.open(flores / f"{code}.devtest.gz", "wt", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    pair = "-".join(sentences)
    config = tmp_path / "script.toml"
    config.write_text(f'[paths]\nflores_dir = "{flores}"\nruns_dir = "runs"\n'
                      f'[pairs.{pair}]\n{pair_option}\n'
                      f'[run_mmarco]\nbenchmark = "flores"\npairs = ["{pair}"]\n'
                      'ngram = 4\nevaluate = true\n', encoding="utf-8")
    return config


def test_a_romanized_pair_runs_end_to_end(tmp_path):
    """Serbian Cyrillic queries over Croatian Latin articles, on FLORES-like files: words do not
    match across scripts, romanised 4-grams do; the run says how it was made."""
    config = flores_pair_config(tmp_path, {"srp_Cyrl": SERBIAN, "hrv_Latn": CROATIAN},
                                "romanize = true")
    table = read_table(run_script("run_mmarco.py", "--config", config, cwd=tmp_path).stdout)
    assert table["srp_Cyrl-hrv_Latn q-sr"]["MRR@10"].rstrip("†") == "1.0000"
    run = tmp_path / "runs" / "flores200-devtest-hr.bm25-uroman-char4.q-sr.retrieve.res.gz"
    text = (tmp_path / "runs" / (run.name + ".json")).read_text()
    assert '"terms": "char4"' in text and '"romanize": "uroman 1.3.1.1"' in text
    index = tmp_path / "indexes" / "bm25-uroman-char4" / "flores200-devtest-hr" / bm25.META
    assert json.loads(index.read_text())["romanize"] == "uroman 1.3.1.1"
    # without the bridge no term of a Serbian query is a term of its Croatian article
    plain = get_analyzer("hr", ngram=4)
    assert not set(plain(SERBIAN[0])) & set(plain(CROATIAN[0]))


def test_a_skeleton_pair_runs_end_to_end(tmp_path):
    """Acehnese Jawi queries over Latin Acehnese articles (a pair config's skeleton = true):
    consonant skeletons of both; labels, run records and the index say so; --skeleton asks the
    same of every pair."""
    config = flores_pair_config(tmp_path, {"ace_Arab": JAWI, "ace_Latn": ACEHNESE},
                                "skeleton = true")
    proc = run_script("run_mmarco.py", "--config", config, cwd=tmp_path)
    table = read_table(proc.stdout)
    assert table["ace_Arab-ace_Latn q-ace_Arab"]["MRR@10"].rstrip("†") == "1.0000"
    assert "| flores bm25-uroman-skel-char4 |" in proc.stdout
    name = "flores200-devtest-ace_Latn.bm25-uroman-skel-char4.q-ace_Arab.retrieve.res.gz"
    record = json.loads((tmp_path / "runs" / (name + ".json")).read_text())
    assert '"romanize": "uroman 1.3.1.1, consonant skeleton"' in json.dumps(record)
    index = tmp_path / "indexes" / "bm25-uroman-skel-char4" / "flores200-devtest-ace_Latn"
    assert json.loads((index / bm25.META).read_text())["romanize"] == \
        "uroman 1.3.1.1, consonant skeleton"
    # the flag: the same analysis for a pair whose table does not ask for it
    config.write_text(config.read_text().replace("skeleton = true", "romanize = false"))
    run_script("run_mmarco.py", "--config", config, "--skeleton", "--runs-dir", "flag",
               cwd=tmp_path)
    assert (tmp_path / "flag" / name).read_bytes() == (tmp_path / "runs" / name).read_bytes()
    # index_bm25.py builds the same index under the same name
    built = run_script("index_bm25.py", "--dataset", tmp_path / "data" /
                       "flores200-devtest-ace_Latn", "--lang", "ace", "--ngram", "4",
                       "--skeleton", cwd=tmp_path)
    assert "already built" in built.stderr
