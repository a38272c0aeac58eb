"""The small real default: cross-variety retrieval built from FLORES-200 devtest.

For a pair, the documents are the 281 source articles in the high-resource language (the
sentences of one article joined in order), the queries are the 1,012 sentences, once in the
high-resource language (the dataset's own queries.tsv) and once in the variety (a query file in
the translations folder), and the one relevant document of a query is the article holding it.

FLORES-200 is CC BY-SA 4.0 (NLLB Team et al., 2022); its maintainers ask that it is not re-hosted
as plain text, so everything built from it here stays gzipped.
"""
import gzip
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.parse
from pathlib import Path

from . import downloads, languages
from .datasets import write_queries
from .errors import UserError
from .runs import atomic_path, gzip_text
from .settings import REPO_ROOT
from .textfiles import read_lines

log = logging.getLogger(__name__)

FLORES_URL = "https://dl.fbaipublicfiles.com/nllb/flores200_dataset.tar.gz"
SHARED_COPY = REPO_ROOT.parent / "shared" / "data" / "flores200-devtest"
DATASET_PREFIX = "flores200-devtest"


def flores_code(directory, language):
    """The FLORES-200 code of ``language`` (a FLORES code such as glg_Latn, or a language code)
    among the devtest files of ``directory``, or None if it has none."""
    directory = Path(directory)
    if languages.is_flores_code(language):
        return language if (directory / f"{language}.devtest.gz").is_file() else None
    lang = languages.canonical(language)
    if lang in languages.FLORES_CODES:
        code = languages.FLORES_CODES[lang]
        return code if (directory / f"{code}.devtest.gz").is_file() else None
    found = sorted(p.name.split(".")[0]
                   for p in directory.glob(f"{languages.iso639_3(lang)}_*.devtest.gz"))
    if len(found) > 1:
        raise UserError(f"{directory} has {languages.name(lang)} in several scripts "
                        f"({', '.join(found)}); name the pair by FLORES codes, e.g. {found[0]}-...")
    return found[0] if found else None


def _codes_in(directory, langs):
    """The FLORES codes of ``langs`` if ``directory`` holds all of them and the metadata."""
    if not directory or not (Path(directory) / "metadata_devtest.tsv.gz").is_file():
        return None
    codes = [flores_code(directory, lang) for lang in langs]
    return None if None in codes else codes


def find_flores(flores_dir, data_dir, langs, url=FLORES_URL):
    """(folder, FLORES codes) of the devtest files of ``langs`` (language or FLORES codes): in
    the configured folder, $FLORES_DIR, the shared copy beside the repository, or a download of
    the public release into ``data_dir``."""
    if flores_dir:
        codes = _codes_in(flores_dir, langs)
        if codes is None:
            raise UserError(f"flores_dir {flores_dir} lacks metadata_devtest.tsv.gz or the devtest "
                            f"file of one of {', '.join(langs)} (files {{code}}.devtest.gz, e.g. "
                            "glg_Latn.devtest.gz)")
        return Path(flores_dir), codes
    for candidate in (os.environ.get("FLORES_DIR"), SHARED_COPY, Path(data_dir) / DATASET_PREFIX):
        codes = _codes_in(candidate, langs)
        if codes:
            _check_download(candidate, codes)
            return Path(candidate), codes
    target = Path(data_dir) / DATASET_PREFIX
    download_flores(url, target)
    codes = _codes_in(target, langs)
    if codes is None:
        raise UserError(f"FLORES-200 ({url}) has no devtest file for one of {', '.join(langs)}; "
                        "check the codes (FLORES-200 codes look like glg_Latn)")
    return target, codes


def _check_download(folder, codes):
    """A downloaded copy (one with SHA256SUMS): its files used here, against their SHA-256s."""
    downloads.check_manifest(folder, ["metadata_devtest.tsv.gz"] +
                             [f"{code}.devtest.gz" for code in codes],
                             f"delete {folder} to fetch FLORES-200 again")


def download_flores(url, target):
    """Fetch the FLORES-200 release and keep its devtest files, gzipped, in ``target``, with
    their SHA-256s in ``target/SHA256SUMS`` and the release archive's beside its name."""
    log.info("downloading FLORES-200 from %s (set flores_dir or $FLORES_DIR to use a copy)", url)
    archive_name = Path(urllib.parse.urlparse(url).path).name or "flores200_dataset.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / archive_name
        try:
            digest = downloads.fetch(url, archive)
        except OSError as e:
            raise UserError(f"could not download FLORES-200 from {url} ({e}); download it "
                            "elsewhere, put its devtest files (gzipped: {code}.devtest.gz and "
                            "metadata_devtest.tsv.gz) in a folder and pass --flores-dir") from None
        with atomic_path(target) as out, tarfile.open(archive) as tar:
            out.mkdir(parents=True)
            names = []
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and (name.endswith(".devtest") or name == "metadata_devtest.tsv"):
                    with tar.extractfile(member) as src, gzip.open(out / f"{name}.gz", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    names.append(f"{name}.gz")
            downloads.write_manifest(out, names)
            downloads.record(out / archive_name, digest)  # the release's, for provenance


def read_sentences(flores, code):
    return [line for _, line in read_lines(Path(flores) / f"{code}.devtest.gz")]


def read_articles(flores):
    """The article (source URL) of each sentence, in sentence order."""
    lines = [line for _, line in read_lines(Path(flores) / "metadata_devtest.tsv.gz")]
    return [line.split("\t")[0] for line in lines[1:]]


def dataset_name(highres):
    return f"{DATASET_PREFIX}-{highres}"


def build_flores(pair, flores, codes, data_dir, translations_dir):
    """Write the FLORES dataset of ``pair`` (docs, high-resource queries, qrels) under
    ``data_dir`` and its variety query file under ``translations_dir``; skip what exists.
    ``codes`` are the FLORES codes of the high-resource side and of the variety (find_flores).
    Returns (dataset directory, variety query file)."""
    highres_code, variety_code = codes
    name = dataset_name(pair.highres)
    dataset_dir = Path(data_dir) / name
    variety_file = Path(translations_dir) / f"{name}.{pair.variety}.tsv.gz"  # gzipped: licence
    articles = read_articles(flores)
    qids = [str(i) for i in range(1, len(articles) + 1)]
    if not dataset_dir.is_dir():
        sentences = read_sentences(flores, highres_code)
        docnos = {}
        for url in articles:
            docnos.setdefault(url, f"a{len(docnos) + 1:03d}")
        docs = {}
        for url, sentence in zip(articles, sentences):
            docs.setdefault(docnos[url], []).append(sentence)
        with atomic_path(dataset_dir) as tmp:
            tmp.mkdir(parents=True)
            with gzip_text(tmp / "docs.tsv.gz", 9) as f:  # the same bytes every time
                for docno, doc_sentences in docs.items():
                    f.write(f"{docno}\t{' '.join(doc_sentences)}\n")
            with gzip_text(tmp / "qrels.txt.gz", 9) as f:
                for qid, url in zip(qids, articles):
                    f.write(f"{qid} 0 {docnos[url]} 1\n")
            _write_sentences(qids, sentences, tmp / "queries.tsv.gz")
        log.info("built %s: %d articles, %d queries (%s)", dataset_dir, len(docs), len(qids),
                 highres_code)
    if not variety_file.is_file():
        _write_sentences(qids, read_sentences(flores, variety_code), variety_file)
        log.info("wrote %s (%s)", variety_file, variety_code)
    return dataset_dir, variety_file


def _write_sentences(qids, sentences, path):
    import pandas as pd
    if len(sentences) != len(qids):
        raise UserError(f"{path}: {len(sentences)} FLORES sentences for {len(qids)} metadata "
                        "lines; the FLORES files are incomplete: fetch them again")
    write_queries(pd.DataFrame({"qid": qids, "query": sentences}), path)
