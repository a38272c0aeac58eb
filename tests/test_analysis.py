import logging
import pickle

import pytest

from crossvariety.families.analysis import Analyzer, get_analyzer
from crossvariety.errors import UsageError


def test_french_accents_elision_and_curly_apostrophes():
    fr = get_analyzer("fr")
    assert fr.tokens("L’eau de l'Hôpital, QU'IL") == ["eau", "de", "hôpital", "il"]
    # Stopwords go before stemming; Snowball french stems the rest.
    assert fr("L'eau potable des diabétiques") == ["eau", "potabl", "diabet"]


def test_pisa_would_have_mangled_these_terms():
    # PISA's ASCII tokenizer turns "café" into "caf" and "l'aigua" into "l"; ours keeps words whole.
    assert get_analyzer("ca").tokens("l'aigua del cafè") == ["aigua", "del", "cafè"]
    assert get_analyzer("fr").tokens("café") == ["café"]


def test_catalan_middle_dot_and_elision():
    ca = get_analyzer("ca")
    assert ca.tokens("La col·lecció d'art") == ["la", "col·lecció", "art"]


def test_italian_elision():
    assert get_analyzer("it").tokens("dell'acqua all'università") == ["acqua", "università"]


def test_cyrillic():
    ru = get_analyzer("ru")
    assert ru.tokens("Зелёные ЁЛКИ") == ["зеленые", "елки"]
    assert ru("Зелёные деревья и ёлки") == ["зелен", "дерев", "елк"]


def test_chinese_bigrams_and_mixed_script():
    zh = get_analyzer("zh")
    assert zh("我们现在有4个月大的老鼠DNA") == [
        "我们", "们现", "现在", "在有", "4", "个月", "月大", "大的", "的老", "老鼠", "dna"]
    assert zh("中") == ["中"]
    # Full-width digits and letters are folded by NFKC.
    assert zh("４Ｇ网络") == ["4g", "网络"]


def test_persian_normalisation():
    fa = get_analyzer("fa")
    # Arabic kaf (U+0643) and yeh (U+064A) become Persian ones (U+06A9, U+06CC), diacritics and
    # tatweel go, ZWNJ separates.
    assert fa.normalize("\u0643\u062a\u0627\u0628") == "\u06a9\u062a\u0627\u0628"
    assert fa.normalize("\u0639\u0644\u064a") == "\u0639\u0644\u06cc"
    assert fa.normalize("عَلی") == "علی"
    assert fa.normalize("نامه\u200cها") == "نامه ها"
    assert fa.normalize("۱۲۳") == "123"


def test_english_uses_a_short_stop_list():
    assert get_analyzer("en")("The computers of the information age") == ["comput", "inform", "age"]


def test_dutch_alias_and_unknown_language():
    assert get_analyzer("dt").lang == "nl"
    with pytest.raises(UsageError, match="unknown language 'xx': use an ISO 639 code"):
        Analyzer("xx")


@pytest.mark.parametrize("code, text, terms", [
    # Snowball + stop-words lists beyond the paper's languages, by ISO 639-1, 639-3 or FLORES code
    ("pt", "A água potável das cidades", ["águ", "potável", "cidad"]),
    ("por_Latn", "A água potável das cidades", ["águ", "potável", "cidad"]),
    ("deu", "Die Häuser der Stadt", ["haus", "stadt"]),
    ("es", "Los niños de las ciudades", ["niñ", "ciudad"]),
    ("sv", "Husen i staden", ["hus", "stad"]),
])
def test_snowball_and_stopwords_for_more_languages(code, text, terms):
    assert get_analyzer(code)(text) == terms


def test_a_language_without_stemmer_or_stop_list_gets_the_generic_analysis(caplog):
    with caplog.at_level(logging.WARNING):
        lb = Analyzer("ltz_Latn")
    assert lb.lang == "lb" and lb.generic
    assert "no stemmer or stop list for Luxembourgish (lb): generic analysis" in caplog.text
    # Unicode words, lowercased, apostrophes inside words dropped; no stopwords, no stemming
    assert lb("D’Haiser vun der STAD, 2024") == ["dhaiser", "vun", "der", "stad", "2024"]
    assert not get_analyzer("pt").generic


def test_cjk_unigrams_and_bigrams_is_a_named_option():
    text = "我们现在有4个"
    assert get_analyzer("zh")(text) == ["我们", "们现", "现在", "在有", "4", "个"]
    assert get_analyzer("zh", "unigrams+bigrams")(text) == [
        "我", "我们", "们", "们现", "现", "现在", "在", "在有", "有", "4", "个"]
    assert get_analyzer("yue", "unigrams+bigrams")("我哋") == ["我", "我哋", "哋"]
    # the option changes Chinese and Cantonese only
    assert get_analyzer("fr", "unigrams+bigrams")("les chats") == get_analyzer("fr")("les chats")
    with pytest.raises(UsageError, match="unknown CJK analysis 'trigrams'"):
        Analyzer("zh", "trigrams")


def test_counts_and_pickle():
    fr = get_analyzer("fr")
    assert fr.counts("miel miel fleurs") == {"miel": 2, "fleur": 1}
    assert pickle.loads(pickle.dumps(fr)).counts("miel") == {"miel": 1}
    zh = pickle.loads(pickle.dumps(get_analyzer("zh", "unigrams+bigrams")))
    assert zh("中国") == ["中", "中国", "国"]
