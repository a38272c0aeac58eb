"""Datasets (an ``irds:`` id or a local directory) and the strict reader of query files.

A local dataset directory holds (each file may be gzipped, ``.gz``):

    docs.tsv      docno<TAB>text, one document a line, no header     (or docs.jsonl:
                  {"docno": ..., "text": ..., "title": ...} a line)
    queries.tsv   qid<TAB>query, UTF-8, no header (read strictly, see read_queries)
    qrels.txt     TREC qrels: qid 0 docno label

ir_datasets ids take the ``irds:`` prefix, as in PyTerrier (``irds:mmarco/v2/fr/dev/small``).
Documents with a title (neuCLIR) are read as title + newline + text. When ir_datasets cannot
download a file (no network), the error says which file to fetch and where to put it.
"""
import contextlib
import gzip
import json
import logging
import zlib
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..runs import atomic_path
from .textfiles import gzip_problem, not_utf8, read_lines

log = logging.getLogger(__name__)


class QueryFileError(UserError):
    """A query file that cannot be read as written; the message names the file, lines and fix."""


def _find(directory, stem):
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def read_queries(path, known_qids=None, max_errors=20):
    """Read ``qid<TAB>query`` lines strictly into a DataFrame (qid, query).

    Every malformed line is an error (missing tab, extra tabs, empty qid or query, duplicate qid,
    qid not in ``known_qids``, bytes that are not UTF-8); all of them (up to ``max_errors``) are
    reported at once with their line numbers and the fix, and nothing is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise QueryFileError(f"{path}: " + ("a folder, not a query file (qid<TAB>query lines)"
                                            if path.is_dir() else "query file not found"))
    errors, rows, seen = [], [], {}
    known = None if known_qids is None else set(known_qids)
    raw = path.read_bytes()
    gzipped = path.suffix == ".gz"
    if gzipped:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise QueryFileError("; ".join(gzip_problem(path, e))) from None
    elif raw.startswith(b"\x1f\x8b"):
        raise QueryFileError(f"{path}: gzip data in a file not named .gz; rename it "
                             f"{path.name}.gz")
    offset = 0  # of the line's start
    if raw.startswith(b"\xef\xbb\xbf"):
        raw, offset = raw[3:], 3
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline
    for lineno, line in enumerate(lines, start=1):
        where = f"{path}:{lineno}"
        line_offset, offset = offset, offset + len(line) + 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            errors.append("; ".join(not_utf8(path, lineno, line_offset, e, gzipped)))
            continue
        text = text.removesuffix("\r")
        fields = text.split("\t")
        if len(fields) == 1:
            errors.append(f"{where}: no tab between qid and query ({text[:60]!r}); "
                          "write 'qid<TAB>query'")
            continue
        if len(fields) > 2:
            errors.append(f"{where}: {len(fields) - 1} tabs ({text[:60]!r}); a query may not contain "
                          "a tab: replace the tabs inside the query with spaces")
            continue
        qid, query = fields[0].strip(), fields[1]
        if not qid:
            errors.append(f"{where}: empty qid; write 'qid<TAB>query'")
            continue
        if not query.strip():
            errors.append(f"{where}: empty query for qid {qid!r}; supply its text or delete the line "
                          "(and so the qid) on purpose")
            continue
        if qid in seen:
            errors.append(f"{where}: duplicate qid {qid!r} (first on line {seen[qid]}); "
                          "keep one line per qid")
            continue
        if known is not None and qid not in known:
            hint = " (a header line? the file must have none)" if lineno == 1 else ""
            errors.append(f"{where}: qid {qid!r} is not a query of the collection's topics{hint}; "
                          "check that the file belongs to this dataset")
            continue
        seen[qid] = lineno
        rows.append((qid, query.strip()))
    if errors:
        more = f"\n... and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
        raise QueryFileError(f"{path}: {len(errors)} malformed line(s):\n  "
                             + "\n  ".join(errors[:max_errors]) + more)
    if not rows:
        raise QueryFileError(f"{path}: no queries in the file")
    return pd.DataFrame(rows, columns=["qid", "query"])


def load_queries(spec, field=None, known_qids=None):
    """Queries from a query file (read strictly), an irds: id or a dataset folder."""
    if str(spec).startswith("irds:") or Path(spec).is_dir():
        return Dataset(spec).queries(field)
    return read_queries(spec, known_qids)


def variety_queries_path(translations_dir, dataset_name, variety):
    """Where the variety's version of a dataset's queries lives: {dataset}.{variety}.tsv[.gz]."""
    plain = Path(translations_dir) / f"{dataset_name}.{variety}.tsv"
    gzipped = plain.with_name(plain.name + ".gz")
    return gzipped if gzipped.is_file() and not plain.is_file() else plain


def dataset_name(spec):
    """A dataset's name in file names: irds:mmarco/v2/fr/dev/small -> mmarco-v2-fr-dev-small, a
    folder -> its name."""
    spec = str(spec)
    if spec.startswith("irds:"):
        return spec[len("irds:"):].replace("/", "-")
    return Path(spec).resolve().name


def write_queries(queries, path):
    """Write a (qid, query) DataFrame as a query file that read_queries accepts, atomically."""
    bad = queries["query"].str.contains(r"[\t\n\r]", regex=True)
    if bad.any():
        raise UserError(f"queries with tabs or line breaks cannot be written to {path}: "
                         f"qids {list(queries.qid[bad][:5])}")
    with atomic_path(path) as tmp:
        with (gzip.open(tmp, "wt", encoding="utf-8") if str(path).endswith(".gz")
              else open(tmp, "wt", encoding="utf-8")) as f:
            for qid, query in zip(queries.qid, queries["query"]):
                f.write(f"{qid}\t{query}\n")


@contextlib.contextmanager
def _downloads(spec):
    """Turn ir_datasets' failed downloads into a UserError naming the file and where it goes,
    and a file of its cache that is truncated, corrupt or not UTF-8 into one naming the file."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError) as e:
        problem = f"not UTF-8 ({e.reason})" if isinstance(e, UnicodeDecodeError) else \
            "truncated" if isinstance(e, EOFError) else f"corrupt ({e})"
        raise UserError(f"{spec}: {_file_in_traceback(e) or 'a file of ir_datasets'} is {problem}; "
                        "delete it so that ir_datasets fetches it again, or put a complete copy "
                        "there") from None
    except (OSError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "download" not in str(e).lower():
            raise
        # ir_datasets' Download object (in a frame of the traceback) knows the URL and the
        # cache path; with the file there, ir_datasets skips the download.
        url = cache = None
        traceback = e.__traceback__
        while traceback:
            download = traceback.tb_frame.f_locals.get("self")
            if type(download).__name__ == "Download" and hasattr(download, "_cache_path"):
                cache = download._cache_path
                url = next((m.url for m in download.mirrors if hasattr(m, "url")), None)
            traceback = traceback.tb_next
        if cache is None:
            if isinstance(e, (FileNotFoundError, PermissionError)):
                raise
            raise UserError(f"{spec}: ir_datasets could not read or download its files "
                            f"({type(e).__name__}: {str(e)[:200]}); run once with network "
                            "access, or put its files under $IR_DATASETS_HOME at the paths "
                            "ir_datasets/etc/downloads.json lists") from None
        raise UserError(f"{spec}: ir_datasets could not download {url or 'a file'} (no network?); "
                        f"download it and put it at {cache}, then run again") from None


def _file_in_traceback(error):
    """The file that ``error`` was raised reading: the innermost open file (``.name``) or
    ir_datasets download (``.dlc.path()``) among the locals of its traceback's frames."""
    found, traceback = None, error.__traceback__
    while traceback:
        for value in list(traceback.tb_frame.f_locals.values()):
            name = getattr(value, "name", None)
            dlc = getattr(value, "dlc", None)
            if isinstance(name, str) and Path(name).is_file():
                found = name
            elif callable(getattr(dlc, "path", None)):
                try:
                    found = str(dlc.path(force=False))  # force would download a missing file
                except TypeError:
                    pass
        traceback = traceback.tb_next
    return found


class Dataset:
    """Documents, queries and qrels of an ``irds:`` id or a local directory (see module doc)."""

    def __init__(self, spec):
        self.spec = str(spec)
        if self.spec.startswith("irds:"):
            import ir_datasets
            self.irds_id = self.spec[len("irds:"):]
            try:
                self._irds = ir_datasets.load(self.irds_id)
            except KeyError:
                raise UserError(f"unknown ir_datasets id {self.irds_id!r} (from {self.spec!r}); "
                                "see https://ir-datasets.com") from None
            self.dir = None
        else:
            self.irds_id = None
            self.dir = Path(self.spec)
            if not self.dir.is_dir():
                raise UserError(f"dataset {self.spec!r} is neither an irds: id nor a directory; "
                                "give an irds: id (irds:mmarco/v2/fr) or a folder with docs.tsv, "
                                "queries.tsv and qrels.txt")

    @property
    def name(self):
        return dataset_name(self.spec)

    def __repr__(self):
        return f"Dataset({self.spec!r})"

    def collection(self):
        """The dataset that provides the documents (neuclir/1/fa for neuclir/1/fa/trec-2022), so
        that topic sets over one collection share its indexes."""
        if self.irds_id:
            import ir_datasets
            parent = ir_datasets.docs_parent_id(self.irds_id)
            if parent and parent != self.irds_id:
                return Dataset(f"irds:{parent}")
        return self

    # documents
    def _docs_file(self):
        return _find(self.dir, "docs.tsv") or _find(self.dir, "docs.jsonl")

    def docs_lang(self):
        """The documents' language code as ir_datasets records it (None for local folders)."""
        return self._irds.docs_lang() if self.irds_id else None

    def docs_count(self):
        if self.irds_id:
            return self._irds.docs_count()
        return None

    def docs_iter(self):
        """Yield {"docno", "text"} dicts; a title is prepended to the text with a newline."""
        if self.irds_id:
            with _downloads(self.spec):
                for doc in self._irds.docs_iter():
                    yield {"docno": doc.doc_id, "text": _irds_text(doc)}
            return
        path = self._docs_file()
        if path is None:
            raise UserError(f"{self.dir}: no docs.tsv(.gz) or docs.jsonl(.gz); write the documents "
                            "there as docno<TAB>text lines")
        yield from read_docs(path)

    def doc_texts(self, docnos):
        """{docno: text} for the given docnos that exist (random access for irds: datasets)."""
        if self.irds_id:
            with _downloads(self.spec):
                found = self._irds.docs_store().get_many(docnos)
            return {docno: _irds_text(doc) for docno, doc in found.items()}
        wanted = set(docnos)
        return {d["docno"]: d["text"] for d in self.docs_iter() if d["docno"] in wanted}

    # queries
    def queries(self, field=None):
        """The topics as a DataFrame (qid, query); ``field`` picks a field (neuCLIR: title, ht_title)."""
        if self.irds_id:
            if not self._irds.has_queries():
                raise UserError(f"{self.spec} has no queries; pick a subset such as .../dev/small")
            cls = self._irds.queries_cls()
            fields = cls._fields[1:]
            if field is None:
                if "text" not in fields:
                    raise UserError(f"{self.spec}: queries have fields {fields}; choose one "
                                    "(e.g. --query-field title)")
                field = "text"
            if field not in fields:
                raise UserError(f"{self.spec}: queries have no field {field!r}; fields: {fields}")
            with _downloads(self.spec):
                rows = [(q.query_id, getattr(q, field)) for q in self._irds.queries_iter()]
            return pd.DataFrame(rows, columns=["qid", "query"])
        path = _find(self.dir, "queries.tsv")
        if path is None:
            raise UserError(f"{self.dir}: no queries.tsv(.gz); write the queries there as "
                            "qid<TAB>query lines")
        return read_queries(path)

    # qrels
    def qrels(self):
        """The relevance judgements as a DataFrame (qid, docno, label)."""
        if self.irds_id:
            if not self._irds.has_qrels():
                raise UserError(f"{self.spec} has no qrels; pick a topic set with judgements "
                                "such as .../dev/small")
            with _downloads(self.spec):
                rows = [(q.query_id, q.doc_id, q.relevance) for q in self._irds.qrels_iter()]
            return pd.DataFrame(rows, columns=["qid", "docno", "label"])
        path = _find(self.dir, "qrels.txt")
        if path is None:
            raise UserError(f"{self.dir}: no qrels.txt(.gz); write the judgements there as TREC "
                            "qrels lines (qid 0 docno label)")
        return read_qrels(path)


def _irds_text(doc):
    title = getattr(doc, "title", "") or ""
    text = getattr(doc, "text", None)
    if text is None:
        text = doc.default_text()
    return f"{title}\n{text}" if title else text


def read_docs(path):
    """Yield {"docno", "text"} of a docs.tsv or docs.jsonl file (gzipped or not), checked while
    it streams: a line that is not a document, a docno that is empty, holds a space (TREC run
    files split on whitespace) or comes twice, and a file without documents are UserErrors that
    name the line(s). Remembering the docnos costs about 100 bytes each (100 MB a million)."""
    path = Path(path)
    jsonl = ".jsonl" in path.name
    seen = set()
    for lineno, line in read_lines(path):
        docno, text = _json_doc(path, lineno, line) if jsonl else _tsv_doc(path, lineno, line)
        if not docno or docno.split() != [docno]:
            raise UserError(f"{path}:{lineno}: docno {docno!r} is empty or holds whitespace, "
                            "which TREC run files cannot hold; give the document a docno "
                            "without spaces")
        if docno in seen:
            first = next(n for n, other in read_lines(path) if n < lineno and (
                _json_doc(path, n, other) if jsonl else _tsv_doc(path, n, other))[0] == docno)
            raise UserError(f"{path}:{lineno}: docno {docno!r} again (first on line {first}); a "
                            "collection holds each document once: remove or rename one of them")
        seen.add(docno)
        yield {"docno": docno, "text": text}
    if not seen:
        raise UserError(f"{path}: no documents in the file; write one document a line"
                        + (' ({"docno": "d1", "text": "..."})' if jsonl else " (docno<TAB>text)"))


def _tsv_doc(path, lineno, line):
    docno, sep, text = line.partition("\t")
    if not sep:
        raise UserError(f"{path}:{lineno}: no tab between docno and text; write docno<TAB>text")
    return docno, text


def _json_doc(path, lineno, line):
    """(docno, text) of a docs.jsonl line: a title is prepended to the text with a newline."""
    form = '{"docno": "d1", "title": "...", "text": "..."} (title optional)'
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{lineno}: not JSON ({e.msg}); a document line is {form}") \
            from None
    if not isinstance(doc, dict) or "docno" not in doc or "text" not in doc:
        raise UserError(f"{path}:{lineno}: a document line is JSON with docno and text: {form}")
    docno, title, text = doc["docno"], doc.get("title"), doc["text"]
    if isinstance(docno, bool) or not isinstance(docno, (str, int)):
        raise UserError(f"{path}:{lineno}: docno is {json.dumps(docno)}, not a string; {form}")
    for field, value in (("text", text), ("title", title)):
        if not isinstance(value, str) and not (field == "title" and value is None):
            raise UserError(f"{path}:{lineno}: {field} is {json.dumps(value)[:40]}, not a "
                            f"string; {form}")
    return str(docno), f"{title}\n{text}" if title else text


def read_qrels(path):
    """Read a TREC qrels file (qid iteration docno label) into a DataFrame (qid, docno, label).

    A (qid, docno) judged twice is an error naming both lines, as trec_eval refuses it too."""
    rows, seen = [], {}
    for lineno, line in read_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4:
            raise UserError(f"{path}:{lineno}: a qrels line has 4 fields "
                            f"(qid iteration docno label), found {len(fields)}")
        try:
            label = int(fields[3])
        except ValueError:
            raise UserError(f"{path}:{lineno}: label {fields[3]!r} is not an integer; "
                            "write relevance labels as integers (0, 1, 2, 3)") from None
        key = fields[0], fields[2]
        if key in seen:
            raise UserError(f"{path}:{lineno}: qid {key[0]} docno {key[1]} is judged again "
                            f"(first on line {seen[key]}); keep one judgement per query and "
                            "document (trec_eval refuses duplicates too)")
        seen[key] = lineno
        rows.append((key[0], key[1], label))
    return pd.DataFrame(rows, columns=["qid", "docno", "label"])
