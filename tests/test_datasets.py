import gzip

import pytest

from crossvariety.data.datasets import Dataset, QueryFileError, read_queries, write_queries
from crossvariety.models import model_label, resolve_model


def write(path, text):
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_reads_a_clean_file_with_bom_crlf_and_gzip(tmp_path):
    f = write(tmp_path / "q.tsv", "\ufeff1\tQuin temps fa?\r\n2\t  La torre Eiffel \n")
    queries = read_queries(f, known_qids=["1", "2", "3"])
    assert list(queries.qid) == ["1", "2"]
    assert list(queries["query"]) == ["Quin temps fa?", "La torre Eiffel"]
    gz = tmp_path / "q.tsv.gz"
    gz.write_bytes(gzip.compress(f.read_bytes()))
    assert read_queries(gz).equals(queries)


@pytest.mark.parametrize("content, message", [
    ("1\tok\n2 no tab here\n", r"q.tsv:2: no tab between qid and query"),
    ("1\tok\n2\tone\ttwo\n", r"q.tsv:2: 2 tabs .* replace the tabs inside the query with spaces"),
    ("1\tok\n2\t   \n", r"q.tsv:2: empty query for qid '2'"),
    ("1\tok\n\tquery\n", r"q.tsv:2: empty qid"),
    ("1\tok\n1\tagain\n", r"q.tsv:2: duplicate qid '1' \(first on line 1\)"),
    ("1\tok\n9\tunknown\n", r"q.tsv:2: qid '9' is not a query of the collection's topics"),
    ("qid\tquery\n1\tok\n", r"q.tsv:1: qid 'qid' .*\(a header line\? the file must have none\)"),
    ("1\tok\n\n2\tok\n", r"q.tsv:2: no tab between qid and query"),
    (b"1\tok\n2\tcaf\xe9\n", r"q.tsv:2: not UTF-8 .* re-save the file as UTF-8"),
])
def test_malformed_lines_are_errors_naming_file_line_and_fix(tmp_path, content, message):
    f = write(tmp_path / "q.tsv", content)
    with pytest.raises(QueryFileError, match=message):
        read_queries(f, known_qids=["1", "2"])


def test_every_bad_line_is_reported_at_once(tmp_path):
    f = write(tmp_path / "q.tsv", "1\tok\nbad\n3\t\n1\tdup\n")
    with pytest.raises(QueryFileError) as e:
        read_queries(f)
    text = str(e.value)
    assert "3 malformed line(s)" in text
    assert "q.tsv:2:" in text and "q.tsv:3:" in text and "q.tsv:4:" in text


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(QueryFileError, match="not found"):
        read_queries(tmp_path / "nope.tsv")
    with pytest.raises(QueryFileError, match="no queries"):
        read_queries(write(tmp_path / "empty.tsv", ""))


def test_write_queries_round_trip_and_refuses_tabs(tmp_path):
    import pandas as pd
    queries = pd.DataFrame({"qid": ["1", "2"], "query": ["a b", "c"]})
    write_queries(queries, tmp_path / "q.tsv.gz")
    assert read_queries(tmp_path / "q.tsv.gz").equals(queries)
    with pytest.raises(ValueError, match="tabs or line breaks"):
        write_queries(pd.DataFrame({"qid": ["1"], "query": ["a\tb"]}), tmp_path / "bad.tsv")
    assert not (tmp_path / "bad.tsv").exists()


def test_local_dataset_layout(tmp_path):
    write(tmp_path / "docs.tsv", "d1\tfirst doc\nd2\tsecond doc\n")
    write(tmp_path / "queries.tsv", "1\tfirst\n")
    write(tmp_path / "qrels.txt", "1 0 d1 1\n")
    ds = Dataset(tmp_path)
    assert list(ds.docs_iter()) == [{"docno": "d1", "text": "first doc"},
                                    {"docno": "d2", "text": "second doc"}]
    assert ds.queries().to_dict("records") == [{"qid": "1", "query": "first"}]
    assert ds.qrels().to_dict("records") == [{"qid": "1", "docno": "d1", "label": 1}]
    with pytest.raises(ValueError, match="neither an irds: id nor a directory"):
        Dataset(tmp_path / "missing")


def test_jsonl_docs_prepend_title(tmp_path):
    write(tmp_path / "docs.jsonl", '{"docno": "n1", "title": "Title", "text": "Body"}\n')
    assert list(Dataset(tmp_path).docs_iter()) == [{"docno": "n1", "text": "Title\nBody"}]


def test_irds_ids_from_the_fixture_cache(irds_home):
    ds = Dataset("irds:mmarco/v2/fr/dev/small")
    assert ds.name == "mmarco-v2-fr-dev-small"
    assert sorted(ds.queries().qid) == ["101", "102", "103", "104"]  # 105 is not in dev/small
    assert len(ds.qrels()) == 4
    docs = list(Dataset("irds:mmarco/v2/fr").docs_iter())
    assert docs[0] == {"docno": "0", "text": "L'eau potable est une ressource essentielle pour "
                                             "la santé des populations."}
    with pytest.raises(ValueError, match="unknown ir_datasets id"):
        Dataset("irds:mmarco/v2/xx")


def test_model_registry(tmp_path):
    assert resolve_model("bge-m3") == "BAAI/bge-m3"
    assert resolve_model("mt5-lt-afdt") == "andreaschari/mt5-unicamp-lt-afdt"
    assert resolve_model("colbert-xm-lt-cafr") == "andreaschari/colbert-xm-lt-cafr"
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("org/model") == "org/model"
    with pytest.raises(ValueError, match="unknown model 'bge-m4'"):
        resolve_model("bge-m4")
    assert model_label("bge-m3") == "bge-m3"
    assert model_label(str(tmp_path / "my-model") + "/") == "my-model"
