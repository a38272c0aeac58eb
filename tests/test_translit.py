"""Romanised queries ("Lost in Transliteration", SIGIR 2025): uroman as the authors called it and
with its language rules, the Chinese segmentation of their _ANSERINI variants, the seeded 50%
mixture, translate_queries.py --engine uroman and mine_negatives.py --query-script end to end on
a toy Russian (and Chinese) mMARCO, and the released romanised queries read defensively."""
import json
import random

import pytest

from conftest import IRDS_HOME, QRELS_TRAIN, REPO, fake_hub, run_script
from crossvariety.data import negatives, pairs, released, romanization, translation
from crossvariety.data.datasets import read_docs, read_queries
from crossvariety.data.romanization import romanize, segment_text
from crossvariety.data.translation import TranslationCache, translate
from crossvariety.errors import UsageError, UserError

# A toy Russian mMARCO v2 (the French fixture's passages and queries, same ids and qrels) and
# Chinese training queries, at ir_datasets' cache paths.
RU_PASSAGES = {
    "0": "Питьевая вода — важнейший ресурс для здоровья населения.",
    "1": "Эйфелева башня была построена в Париже к Всемирной выставке 1889 года.",
    "2": "Пчёлы производят мёд из нектара цветов.",
    "3": "Диабет первого типа — аутоиммунное заболевание поджелудочной железы.",
    "4": "Луара — самая длинная река Франции.",
    "5": "Кофе — напиток из обжаренных зёрен кофейного дерева.",
    "6": "Муниципальные выборы во Франции проходят каждые шесть лет.",
    "7": "Тёмный шоколад содержит больше какао, чем молочный.",
    "8": "Фотосинтез позволяет растениям производить кислород.",
    "9": "Марафон — забег на дистанцию 42,195 километра.",
}
RU_DEV_QUERIES = {"101": "Кто производит мёд из цветов?", "102": "Когда построили Эйфелеву башню?",
                  "103": "Что такое диабет первого типа?", "104": "Какова дистанция марафона?",
                  "105": "Как часто проходят выборы?"}  # not in dev/small
RU_TRAIN_QUERIES = {"1001": "Что такое питьевая вода?", "1002": "Где находится Эйфелева башня?",
                    "1003": "Что производят пчёлы?", "1004": "Что такое диабет?",
                    "1005": "Какая сегодня погода?"}  # 1005: no qrels
# uroman 1.3.1.1 as the authors called it (lang= ignored: no language rules)
RU_TRAIN_ROMANISED = {"1001": "Chto takoe pitevaya voda?",
                      "1002": "Gde nakhoditsya Eifeleva bashnya?",
                      "1003": "Chto proizvodyat pchely?", "1004": "Chto takoe diabet?"}
ZH_TRAIN_QUERIES = {"1001": "什么是饮用水", "1002": "埃菲尔铁塔在哪里", "1003": "蜜蜂生产什么",
                    "1004": "什么是糖尿病", "1005": "今天天气怎么样"}
PAIR_TABLE = ('[pairs.rus_Latn-rus_Cyrl]\ncollection = "irds:mmarco/v2/ru"\n'
              'topics = "irds:mmarco/v2/ru/dev/small"\ntrain_topics = "irds:mmarco/v2/ru/train"\n'
              'variety_queries = "data/translations/mmarco-v2-ru-dev-small.rus_Latn.tsv"\n')


@pytest.fixture
def ru_mmarco(workdir):
    v2 = IRDS_HOME / "mmarco" / "v2"
    for name, rows in (("russian_collection.tsv", RU_PASSAGES),
                       ("russian.queries.dev.tsv", RU_DEV_QUERIES),
                       ("russian.queries.train.tsv", RU_TRAIN_QUERIES),
                       ("chinese.queries.train.tsv", ZH_TRAIN_QUERIES)):
        (v2 / name).write_text("".join(f"{k}\t{v}\n" for k, v in rows.items()), encoding="utf-8")
    return workdir


# ----------------------------------------------------------------------------- uroman itself

@pytest.mark.parametrize("text, quirk, lcode, code", [
    ("Щука и ёж, Что такое бюджет?", "Shchuka i ezh, Chto takoe byudzhet?",
     "Shchuka i yozh, Chto takoye byudzhet?", "rus"),  # Russian rules: ё -> yo, е -> ye
    ("Київ", "Kiyiv", "Kyiv", "ukr"),
    ("影音創作者Pewdiepie聲量", "yingyinchuangzuozhePewdiepieshengliang",
     "yingyinchuangzuozhePewdiepieshengliang", "zho"),  # no word breaks: Han has no spaces
    ("Βιβλίο βιβλιοθήκη", "Biblio bibliotheke", "Vivlio vivliotheke", "ell"),
    ("مرحبا بالعالم", "mrhba bal'alm", "mrhba bal'alm", "ara"),
])
def test_uroman_known_strings_with_the_authors_quirk_and_with_lcode(text, quirk, lcode, code):
    from crossvariety.families.analysis import romanizer
    # the authors' call: lang= is not uroman 1.3.1.1's keyword, so it does nothing
    assert romanizer().uroman.romanize_string(text, lang=code) == quirk
    assert romanize(text) == quirk and romanize(text, code) == lcode
    lang = {"rus": "ru", "ukr": "uk", "zho": "zh", "ell": "el", "ara": "ar"}[code]
    assert translate([text], lang, lang, "uroman") == [quirk]
    assert translate([text], lang, lang, "uroman", lcode=True) == [lcode]
    assert translate([text], lang, f"{code}_Latn", "uroman", words=True) == [quirk]  # documents


def test_uroman_engine_parallel_chunks_and_cache(tmp_path, monkeypatch):
    texts = [f"Запрос номер {i}: ёж" for i in range(7)] + ["", "Щука\tи\nёж"]
    alone = [translate([t], "ru", "ru", "uroman")[0] for t in texts]
    assert alone[7] == "" and alone[8] == "Shchuka i ezh"  # single line, empty stays empty
    # several processes, two texts a chunk: the same texts in the same order
    assert translate(texts, "ru", "ru", "uroman", workers=2, chunk_size=2) == alone
    cache = TranslationCache(tmp_path / "cache.sqlite")
    assert translate(texts, "ru", "ru", "uroman", cache=cache) == alone
    def engine(*args):
        raise AssertionError("uroman ran")
    monkeypatch.setattr(romanization, "romanize_texts", engine)
    assert translate(texts, "ru", "ru", "uroman", cache=cache) == alone  # all from the cache
    with pytest.raises(AssertionError, match="uroman ran"):  # lcode: another system
        translate(texts[:1], "ru", "ru", "uroman", cache=cache, lcode=True)
    assert translation.covers("uroman", "ru", "rus_Latn")
    assert not translation.covers("uroman", "ru", "uk")
    with pytest.raises(UsageError, match="uroman writes a language in Latin letters"):
        translate(["ёж"], "ru", "uk", "uroman")
    with pytest.raises(UsageError, match="uroman's options, not apertium's"):
        translate(["ёж"], "ru", "ru", "apertium", lcode=True)


def test_anserini_segmentation_of_chinese():
    """Lucene CJKAnalyzer's cut (pyterrier-anserini's AnseriniTokenizer.zh): overlapping Han
    bigrams, a lone character alone, other words lowercased whole, punctuation and its English
    stop words gone; then romanised, a syllable pair per bigram."""
    text = "影音創作者Pewdiepie聲量。The 中国 和 美国"
    assert segment_text(text, "anserini") == "影音 音創 創作 作者 pewdiepie 聲量 中国 和 美国"
    assert segment_text(text, "") == text
    assert translate(["影音創作者Pewdiepie"], "zh", "zh", "uroman", segment="anserini") == [
        "yingyin yinchuang chuangzuo zuozhe pewdiepie"]
    with pytest.raises(UsageError, match="cuts Chinese text"):
        segment_text("Щука", "anserini", "ru")
    with pytest.raises(UsageError, match="unknown segmentation 'jieba'"):
        segment_text("中国", "jieba")


def test_mixture_rule_draws_exactly_half_by_seed_and_qid():
    qids = [str(q) for q in range(1000, 1101)]  # 101: an odd count
    half = negatives.mixed_half(qids, 42)
    assert len(half) == 50 and half <= set(qids)  # floor(101 / 2) romanised, 51 native
    shuffled = random.Random(0).sample(qids, len(qids))
    assert negatives.mixed_half(shuffled, 42) == half  # the file's order does not matter
    assert negatives.mixed_half(qids + qids[:10], 42) == half  # nor a qid read twice
    assert negatives.mixed_half(qids, 42) == half  # the same draw again
    other = negatives.mixed_half(qids, 43)
    assert len(other) == 50 and other != half  # another seed, another half
    assert len(negatives.mixed_half(qids[:100], 42)) == 50
    assert negatives.mixed_half([], 42) == set() and negatives.mixed_half(["1"], 42) == set()


# ----------------------------------------------------------------------------- the scripts

def test_translate_queries_uroman_end_to_end(ru_mmarco):
    workdir = ru_mmarco
    queries = workdir / "q.tsv"
    queries.write_text("7\tЩука и ёж\n3\tЧто такое бюджет?\n5\tΒιβλίο\n", encoding="utf-8")
    out = workdir / "q.rus_Latn.tsv"
    proc = run_script("translate_queries.py", "--queries", queries, "--src", "ru", "--engine",
                      "uroman", "--out", out, cwd=workdir)
    assert "3 to translate" in proc.stderr
    expected = "7\tShchuka i ezh\n3\tChto takoe byudzhet?\n5\tBiblio\n"
    assert out.read_text(encoding="utf-8") == expected  # qids and order kept
    assert list(read_queries(out).qid) == ["7", "3", "5"]  # the strict format
    proc = run_script("translate_queries.py", "--queries", queries, "--src", "ru", "--engine",
                      "uroman", "--out", out, cwd=workdir)
    assert "3 from the cache, 0 to translate" in proc.stderr
    assert out.read_text(encoding="utf-8") == expected
    # a config's translit pair: its dev/small topics, into its variety_queries; uroman's
    # Russian rules (ё -> yo), and gzip, asked for
    config = workdir / "translit.toml"
    config.write_text(PAIR_TABLE.replace(".rus_Latn.tsv", ".rus_Latn.tsv.gz")
                      + '\n[translate_queries]\npair = "rus_Latn-rus_Cyrl"\nengine = "uroman"\n'
                      'uroman_lcode = true\n', encoding="utf-8")
    run_script("translate_queries.py", "--config", config, cwd=workdir)
    written = read_queries(workdir / "data" / "translations" /
                           "mmarco-v2-ru-dev-small.rus_Latn.tsv.gz")
    assert list(written.qid) == ["101", "102", "103", "104"]
    assert written["query"][0] == "Kto proizvodit myod iz tsvetov?"

    # a romanised collection: a dataset folder that run_mmarco.py takes as --collection
    run_script("translate_queries.py", "--queries", "irds:mmarco/v2/ru", "--src", "ru",
               "--engine", "uroman", "--docs", "--out", workdir / "ru-uroman", cwd=workdir)
    docs = list(read_docs(workdir / "ru-uroman" / "docs.tsv.gz"))
    assert [d["docno"] for d in docs] == list(RU_PASSAGES)
    assert docs[4]["text"] == "Luara — samaya dlinnaya reka Frantsii."

    for args, message in (
            (["--tgt", "uk"], "--tgt must be --src's language (ru"),
            (["--segment", "anserini"], "cuts Chinese text"),
            (["--segment", "jieba"], "--segment 'jieba': choose anserini"),
            (["--engine", "apertium", "--uroman-lcode"], "--uroman-lcode go(es) with --engine "
                                                         "uroman")):
        proc = run_script("translate_queries.py", "--queries", queries, "--src", "ru",
                          "--engine", "uroman", "--out", workdir / "x.tsv", *args, cwd=workdir,
                          check=False)
        assert proc.returncode == 2 and message in proc.stderr.splitlines()[-1], proc.stderr


def test_run_mmarco_takes_a_translit_pair(ru_mmarco):
    """The configs' pair (native topics vs their romanised version) runs as any pair: two query
    sets, labelled by script."""
    workdir = ru_mmarco
    config = workdir / "translit.toml"
    config.write_text(PAIR_TABLE + '\n[run_mmarco]\npairs = ["rus_Latn-rus_Cyrl"]\n'
                      'evaluate = true\nromanize = true  # BM25: both scripts meet in Latin\n',
                      encoding="utf-8")
    romanised = workdir / "data" / "translations" / "mmarco-v2-ru-dev-small.rus_Latn.tsv"
    romanised.write_text("".join(f"{q}\t{romanize(t)}\n" for q, t in RU_DEV_QUERIES.items()
                                 if q != "105"), encoding="utf-8")
    proc = run_script("run_mmarco.py", "--config", config, cwd=workdir)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| rus_Latn")]
    assert [r.split("|")[1].strip() for r in rows] == ["rus_Latn-rus_Cyrl q-rus_Cyrl",
                                                       "rus_Latn-rus_Cyrl q-rus_Latn"]
    assert (workdir / "runs" / "mmarco-v2-ru-dev-small.bm25-uroman.q-rus_Latn.retrieve.res.gz"
            ).is_file()


def mine(workdir, *args, check=True):
    run = workdir / "train.res"
    ranking = ["0", "1", "2", "3", "4", "5", "6", "7"]
    run.write_text("".join(f"{q} Q0 {d} {r} {10 - r} x\n" for q in ("1001", "1002", "1003", "1004")
                           for r, d in enumerate(ranking)))
    return run_script("mine_negatives.py", "--source", "run", "--run", run, "--skip-top", "0",
                      "--rounds", "2", *args, cwd=workdir, check=check)


def examples_of(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_mine_negatives_query_scripts(ru_mmarco):
    """The three training files of the paper, one command each, from the native training
    queries (an irds: id): native, all romanised, exactly half romanised (the seeded rule)."""
    workdir = ru_mmarco
    config = workdir / "translit.toml"
    config.write_text(PAIR_TABLE + '\n[mine_negatives]\npair = "rus_Latn-rus_Cyrl"\n'
                      'queries = "irds:mmarco/v2/ru/train"\n', encoding="utf-8")
    training = workdir / "data" / "training"
    judged = {q for q, _ in QRELS_TRAIN}
    mine(workdir, "--config", config)
    native = examples_of(training / "rus_Latn-rus_Cyrl.run.jsonl")
    assert len(native) == 8 and {e["query"] for e in native} == \
        {RU_TRAIN_QUERIES[q] for q in judged}
    assert native[0]["pos"] == [RU_PASSAGES["0"]]  # Russian passages

    proc = mine(workdir, "--config", config, "--query-script", "translit")
    translit = examples_of(training / "rus_Latn-rus_Cyrl.run.translit.jsonl")
    assert [e["query"] for e in translit] == [RU_TRAIN_ROMANISED[e_q] for e_q in
                                              ("1001", "1002", "1003", "1004") * 2]
    assert [(e["pos"], e["neg"]) for e in translit] == [(e["pos"], e["neg"]) for e in native]
    assert "query script translit: 4 of the 4 queries romanised" in proc.stderr

    mine(workdir, "--config", config, "--query-script", "mixed")
    mixed = examples_of(training / "rus_Latn-rus_Cyrl.run.mixed.jsonl")
    romanised = negatives.mixed_half(judged, 42)
    assert len(romanised) == 2
    assert [e["query"] for e in mixed] == [
        RU_TRAIN_ROMANISED[q] if q in romanised else RU_TRAIN_QUERIES[q]
        for q in ("1001", "1002", "1003", "1004") * 2]  # a query's script is the same each round
    again = workdir / "again.jsonl"
    mine(workdir, "--config", config, "--query-script", "mixed", "--out", again)
    assert again.read_text() == (training / "rus_Latn-rus_Cyrl.run.mixed.jsonl").read_text()
    other = workdir / "seed7.jsonl"
    mine(workdir, "--config", config, "--query-script", "mixed", "--seed", "7", "--out", other)
    seven = negatives.mixed_half(judged, 7)
    assert sum(e["query"] in RU_TRAIN_ROMANISED.values() for e in examples_of(other)[:4]) == 2
    assert {q for q, e in zip(("1001", "1002", "1003", "1004"), examples_of(other)[:4])
            if e["query"] == RU_TRAIN_ROMANISED[q]} == seven

    lcode = workdir / "lcode.jsonl"
    mine(workdir, "--config", config, "--query-script", "translit", "--uroman-lcode",
         "--out", lcode)
    assert examples_of(lcode)[2]["query"] == "Chto proizvodyat pchyoly?"  # ё -> yo
    proc = mine(workdir, "--config", config, "--uroman-lcode", "--out", workdir / "x.jsonl",
                check=False)
    assert proc.returncode == 2 and "--uroman-lcode goes with --query-script translit" in \
        proc.stderr.splitlines()[-1]
    proc = mine(workdir, "--config", config, "--query-script", "half", "--out",
                workdir / "x.jsonl", check=False)
    assert proc.returncode == 2 and "choose native, translit, mixed" in proc.stderr


def test_mine_negatives_anserini_segmentation(ru_mmarco):
    """The _ANSERINI training files: Chinese queries cut into bigrams, then (translit)
    romanised; native ones cut only. Passages from any collection (here the Russian one). The
    training config's pair (its own label, q-zho_Latn-anserini) as it is."""
    workdir = ru_mmarco
    common = ["--config", REPO / "configs" / "train_zh_translit_anserini_bgem3.toml", "--train",
              "irds:mmarco/v2/zh/train", "--collection", "irds:mmarco/v2/ru"]
    mine(workdir, *common, "--query-script", "native", "--out", workdir / "native.jsonl")
    assert examples_of(workdir / "native.jsonl")[0]["query"] == "什么 么是 是饮 饮用 用水"
    mine(workdir, *common, "--out", workdir / "translit.jsonl")
    assert examples_of(workdir / "translit.jsonl")[1]["query"] == \
        "aifei feier ertie tieta tazai zaina nali"
    proc = mine(workdir, *common, "--pair", "rus_Latn-rus_Cyrl", check=False)
    assert proc.returncode == 2 and "cuts Chinese text" in proc.stderr.splitlines()[-1]


# ----------------------------------------------------------------------------- released queries

def test_released_romanised_queries_and_a_malformed_file(ru_mmarco, tmp_path, monkeypatch):
    import huggingface_hub.constants
    workdir = ru_mmarco
    good = "".join(f"{q}\t{romanize(t)}\n" for q, t in RU_DEV_QUERIES.items() if q != "105")
    neuclir = "301\tsheng\tmt\tdesc\n302\tmi feng\tmt2\tdesc2\n"
    hub = fake_hub(tmp_path / "hub", released.TRANSLIT_REPO, {
        "mmarco_v2_ru_dev_small_uroman.tsv": good,
        "mmarco_v2_zh_dev_small_uroman.tsv": "101\tyi\tgood\n102\ter\n",  # 3 fields on line 1
        "neuclir_1_zh_trec-2022_uroman.tsv": neuclir,
        "neuclir_1_ru_trec-2022_uroman.tsv": "301\ta\tb\n"})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))

    target = tmp_path / "ru.tsv"
    released.install_translit_queries("irds:mmarco/v2/ru/dev/small", target,
                                      known_qids=["101", "102", "103", "104"])
    assert target.read_text(encoding="utf-8") == good
    titles = released.install_translit_queries("irds:neuclir/1/zh/trec-2022", tmp_path / "t.tsv")
    assert titles.read_text() == "301\tsheng\n302\tmi feng\n"  # ht_title, the paper's field
    descriptions = released.install_translit_queries("irds:neuclir/1/zh/trec-2022",
                                                     tmp_path / "d.tsv", "ht_description")
    assert descriptions.read_text() == "301\tdesc\n302\tdesc2\n"

    for spec, known, message in (
            ("irds:mmarco/v2/zh/dev/small", None,
             "mmarco_v2_zh_dev_small_uroman.tsv .* line 1: 3 field\\(s\\), not 2"),
            ("irds:neuclir/1/ru/trec-2022", None,
             "neuclir_1_ru_trec-2022_uroman.tsv .* line 1: 3 field\\(s\\), not 4"),
            ("irds:mmarco/v2/ru/dev/small", ["101", "102", "103"],
             "line 4: qid '104' is not a query of the topics"),
            ("irds:mmarco/v2/ru/dev/small", ["101", "102", "103", "104", "105"],
             "lacks 1 of the 5 qids of the topics \\(e.g. 105\\)")):
        with pytest.raises(UserError, match=message) as caught:
            released.install_translit_queries(spec, tmp_path / "bad.tsv", known_qids=known)
        assert "\n" not in str(caught.value) and str(tmp_path / "bad.tsv") in str(caught.value)
        assert f"the released file {released.TRANSLIT_REPO}/" in str(caught.value)
    assert not (tmp_path / "bad.tsv").exists()
    with pytest.raises(UsageError, match="released romanised queries of .* only"):
        released.install_translit_queries("irds:mmarco/v2/fr/dev/small", tmp_path / "x.tsv")
    with pytest.raises(UsageError, match="have the fields ht_title, mt_title, ht_description"):
        released.install_translit_queries("irds:neuclir/1/zh/trec-2022", tmp_path / "x.tsv",
                                          "title")

    # translate_queries.py --released: fetched (here from the fake cache), checked, written
    out = workdir / "released.tsv"
    env = {"HF_HUB_CACHE": str(hub)}
    run_script("translate_queries.py", "--queries", "irds:mmarco/v2/ru/dev/small", "--src", "ru",
               "--engine", "uroman", "--released", "--out", out, cwd=workdir, env=env)
    assert out.read_text(encoding="utf-8") == good
    # what the engine writes is what the authors released (here: the same uroman, no rules)
    mine_ = workdir / "mine.tsv"
    run_script("translate_queries.py", "--queries", "irds:mmarco/v2/ru/dev/small", "--src", "ru",
               "--engine", "uroman", "--out", mine_, cwd=workdir)
    assert mine_.read_text(encoding="utf-8") == good
    # run_mmarco.py fetches them on first use, where the pair's query file is missing
    config = workdir / "fetch.toml"
    config.write_text(PAIR_TABLE + '\n[run_mmarco]\npairs = ["rus_Latn-rus_Cyrl"]\n'
                      'romanize = true\n', encoding="utf-8")
    run_script("run_mmarco.py", "--config", config, cwd=workdir, env=env)
    fetched = workdir / "data" / "translations" / "mmarco-v2-ru-dev-small.rus_Latn.tsv"
    assert fetched.read_text(encoding="utf-8") == good
    # ... only the plain romanisation of the topics the authors romanised
    assert released.has_translit_queries(pairs.pair_from_name("rus_Latn-rus_Cyrl"),
                                         "irds:mmarco/v2/ru/dev/small")
    segmented = pairs.Pair("zho_Latn-anserini-zho_Hans", "zho_Latn-anserini", "zho_Hans", "zh")
    assert not released.has_translit_queries(segmented, "irds:mmarco/v2/zh/dev/small")
    for other in ("irds:mmarco/v2/fr/dev/small", "irds:mmarco/v2/zh/dev/small"):
        assert not released.has_translit_queries(pairs.pair_from_name("rus_Latn-rus_Cyrl"), other)
    # not released: one line that says where to get it, nothing written
    proc = run_script("translate_queries.py", "--queries", "irds:mmarco/v2/fr/dev/small",
                      "--src", "fr", "--engine", "uroman", "--released", "--out",
                      workdir / "fr.tsv", cwd=workdir, env=env, check=False)
    assert proc.returncode == 2 and "released romanised queries of" in proc.stderr
    proc = run_script("translate_queries.py", "--queries", "irds:mmarco/v2/ru/dev/small", "--src",
                      "ru", "--engine", "uroman", "--released", "--uroman-lcode", "--out",
                      workdir / "x.tsv", cwd=workdir, env=env, check=False)
    assert proc.returncode == 2 and "--released takes the authors' romanised queries as they " \
        "are" in proc.stderr
