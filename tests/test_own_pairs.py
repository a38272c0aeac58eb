"""A pair that the package does not know, defined only in a config file, run through every stage:
indexing, query translation (Apertium) or none (FLORES), retrieval and evaluation."""
import gzip

from conftest import FR_DEV_QUERIES, FR_PASSAGES, QRELS_SMALL, flores_source, need, read_table, \
    run_script


def mrr(cell):
    return float(cell.rstrip("†"))


def test_a_flores_pair_defined_in_a_config(tmp_path):
    """Galician queries over Portuguese FLORES articles: nothing in the package names them."""
    flores_source("gl", "pt")
    config = tmp_path / "galician.toml"
    config.write_text('[paths]\nruns_dir = "runs/flores"\n'
                      '[pairs.galician]\nvariety = "gl"\nhighres = "por_Latn"\n'
                      '[run_mmarco]\nbenchmark = "flores"\npairs = ["galician"]\nevaluate = true\n')
    proc = run_script("run_mmarco.py", "--config", config, cwd=tmp_path)
    table = read_table(proc.stdout)
    assert list(table) == ["galician q-pt", "galician q-gl"]
    assert mrr(table["galician q-pt"]["MRR@10"]) == 1.0
    variety = table["galician q-gl"]["MRR@10"]
    assert 0.5 < mrr(variety) < 1.0 and variety.endswith("†")
    runs = tmp_path / "runs" / "flores"
    assert (runs / "flores200-devtest-pt.bm25.q-gl.retrieve.res.gz").is_file()
    assert (runs / "flores.bm25.galician.gap.md").is_file()
    assert (tmp_path / "data" / "translations" / "flores200-devtest-pt.gl.tsv.gz").is_file()


def test_a_pair_over_a_local_collection_defined_in_a_config(tmp_path, irds_home):
    """Catalan queries over one's own French collection (a folder): index, translate the topics
    into Catalan with Apertium, retrieve both query sets, evaluate."""
    need("apertium", "fra-cat")
    news = tmp_path / "my-fr-news"
    news.mkdir()
    with gzip.open(news / "docs.tsv.gz", "wt", encoding="utf-8") as f:
        f.writelines(f"n{d}\t{t}\n" for d, t in FR_PASSAGES.items())
    judged = dict(QRELS_SMALL)
    (news / "queries.tsv").write_text(
        "".join(f"{q}\t{t}\n" for q, t in FR_DEV_QUERIES.items() if q in judged), encoding="utf-8")
    (news / "qrels.txt").write_text("".join(f"{q} 0 n{d} 1\n" for q, d in QRELS_SMALL))
    config = tmp_path / "own.toml"
    config.write_text('[paths]\nruns_dir = "runs/own"\n'
                      '[pairs.ca-news]\nvariety = "ca"\nhighres = "fr"\n'
                      'collection = "my-fr-news"\n'
                      '[index_bm25]\ndataset = "my-fr-news"\nlang = "fr"\n'
                      '[translate_queries]\npair = "ca-news"\nengine = "apertium"\n'
                      '[run_mmarco]\npairs = ["ca-news"]\nevaluate = true\n')

    run_script("index_bm25.py", "--config", config, cwd=tmp_path)
    assert (tmp_path / "indexes" / "bm25" / "my-fr-news" / "crossvariety.json").is_file()
    run_script("translate_queries.py", "--config", config, cwd=tmp_path)
    catalan = (tmp_path / "data" / "translations" / "my-fr-news.ca.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in catalan] == ["101", "102", "103", "104"]
    assert "mel" in catalan[0]  # "miel" in Catalan

    index = tmp_path / "indexes" / "bm25" / "my-fr-news"
    built = (index / "crossvariety.json").stat().st_mtime_ns
    proc = run_script("run_mmarco.py", "--config", config, cwd=tmp_path)
    # index_bm25.py's index is the one used: not rebuilt, no other one made
    assert (index / "crossvariety.json").stat().st_mtime_ns == built
    assert [p.name for p in index.parent.iterdir()] == ["my-fr-news"]
    table = read_table(proc.stdout)
    assert list(table) == ["ca-news q-fr", "ca-news q-ca"]
    assert mrr(table["ca-news q-fr"]["MRR@10"]) == 1.0
    runs = tmp_path / "runs" / "own"
    assert len(list(runs.glob("my-fr-news-*.bm25.ca-news.gap.md"))) == 1  # named by content

    proc = run_script("evaluate.py", runs / "my-fr-news.bm25.q-fr.retrieve.res.gz",
                      runs / "my-fr-news.bm25.q-ca.retrieve.res.gz", "--qrels", "my-fr-news",
                      "--names", "fr", "ca", cwd=tmp_path)
    evaluated = read_table(proc.stdout)
    assert evaluated["fr"]["MRR@10"] == table["ca-news q-fr"]["MRR@10"].rstrip("†")
    assert mrr(evaluated["ca"]["MRR@10"]) == mrr(table["ca-news q-ca"]["MRR@10"])
