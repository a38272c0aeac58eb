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
from ..errors import UserError
from ..runs import atomic_path, gzip_text
from ..settings import REPO_ROOT
from .textfiles import read_lines

log = logging.getLogger(__name__)

FLORES_URL = "https://dl.fbaipublicfiles.com/nllb/flores200_dataset.tar.gz"
SHARED_COPY = REPO_ROOT.parent / "shared" / "data" / "flores200-devtest"
# The paper's 13 languages, gzipped, shipped with the code (CC BY-SA 4.0, README.md there): the
# main job needs no side folder and no download.
EMBEDDED = Path(__file__).resolve().parent / "flores200-devtest"
DATASET_PREFIX = "flores200-devtest"
METADATA = "metadata_devtest.tsv"
WHERE_TO_PUT = (f"--flores-dir takes the FLORES-200 release ({FLORES_URL}, or its unpacked "
                "flores200_dataset folder) or a folder of {code}.devtest.gz files with "
                "metadata_devtest.tsv.gz")


def _layout(folder):
    """(folder of the devtest files, metadata file) of a FLORES-200 copy in any of the layouts
    it comes in: a flat folder of gzipped files (this project's), the release unpacked
    (flores200_dataset/ with devtest/{code}.devtest and metadata_devtest.tsv), that folder's
    devtest/, or the folder it was unpacked in; None if ``folder`` is none of them."""
    if not folder:
        return None
    folder = Path(folder)
    release = folder / "flores200_dataset"
    for texts, meta in ((folder, folder), (folder / "devtest", folder), (folder, folder.parent),
                        (release / "devtest", release)):
        for name in (f"{METADATA}.gz", METADATA):
            if (meta / name).is_file() and texts.is_dir() and \
                    next(texts.glob("*.devtest*"), None) is not None:
                return texts, meta / name
    return None


def devtest_file(directory, code):
    """The devtest file of FLORES code ``code`` in ``directory`` (gzipped or plain), or None."""
    for name in (f"{code}.devtest.gz", f"{code}.devtest"):
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    return None


def wanted_file(language):
    """The file a language's devtest text is in, for the message that asks for it:
    "glg_Latn.devtest.gz", or "glg_*.devtest.gz" when the script is not known."""
    if languages.is_flores_code(language):
        return f"{language}.devtest.gz"
    lang = languages.canonical(language)
    code = languages.FLORES_CODES.get(lang) or f"{languages.iso639_3(lang)}_*"
    return f"{code}.devtest.gz ({languages.name(lang)})"


def flores_code(directory, language):
    """The FLORES-200 code of ``language`` (a FLORES code such as glg_Latn, or a language code)
    among the devtest files of ``directory``, or None if it has none."""
    directory = Path(directory)
    if languages.is_flores_code(language):
        return language if devtest_file(directory, language) or \
            romanised_from(directory, language) else None
    lang = languages.canonical(language)
    if lang in languages.FLORES_CODES:
        code = languages.FLORES_CODES[lang]
        return code if devtest_file(directory, code) else None
    found = sorted({p.name.split(".")[0]
                    for p in directory.glob(f"{languages.iso639_3(lang)}_*.devtest*")})
    if len(found) > 1:
        raise UserError(f"{directory} has {languages.name(lang)} in several scripts "
                        f"({', '.join(found)}); name the pair by FLORES codes, e.g. {found[0]}-...")
    return found[0] if found else None


def romanised_from(directory, code, prefer=""):
    """The FLORES code whose sentences, romanised with uroman, stand for ``code`` when
    ``directory`` has no file of it: rus_Latn -> rus_Cyrl, the language in another script
    there (``prefer``, the pair's documents' code, when it is one of several: zho_Hans, not
    zho_Hant); None for a code FLORES has, one that is not Latin, or none to romanise."""
    directory = Path(directory)
    if devtest_file(directory, code) or not code.endswith("_Latn"):
        return None
    found = sorted({p.name.split(".")[0] for p in directory.glob(f"{code[:-5]}_*.devtest*")}
                   - {code})
    return prefer if prefer in found else found[0] if found else None


def _codes_in(directory, langs):
    """(devtest folder, FLORES codes of ``langs``) if ``directory`` is a FLORES copy that holds
    all of them and the metadata, else None."""
    layout = _layout(directory)
    if layout is None:
        return None
    codes = [flores_code(layout[0], lang) for lang in langs]
    return None if None in codes else (layout[0], codes)


def find_flores(flores_dir, data_dir, langs, url=FLORES_URL):
    """(folder, FLORES codes) of the devtest files of ``langs`` (language or FLORES codes): in
    the configured folder or release archive, else in $FLORES_DIR, the shared copy beside the
    repository, an earlier download, the copy shipped with the code (the paper's 13 languages),
    else a download of the public release into ``data_dir``."""
    if flores_dir:
        flores_dir = Path(flores_dir)
        if flores_dir.is_file() and flores_dir.name.endswith((".tar.gz", ".tgz", ".tar")):
            target = Path(data_dir) / DATASET_PREFIX
            if _codes_in(target, langs) is None:
                log.info("unpacking the devtest files of %s into %s (gzipped)", flores_dir, target)
                _unpack(flores_dir, target, downloads.sha256(flores_dir))
            found = _codes_in(target, langs)
            if found is None:
                raise UserError(f"{flores_dir} has no {_missing_text(target, langs)}; "
                                f"{WHERE_TO_PUT}")
            return found
        if not flores_dir.is_dir():
            raise UserError(f"flores_dir {flores_dir} does not exist; {WHERE_TO_PUT}")
        found = _codes_in(flores_dir, langs)
        if found is None:
            if _layout(flores_dir) is None:
                raise UserError(f"flores_dir {flores_dir} lacks metadata_devtest.tsv.gz (or the "
                                f"release's metadata_devtest.tsv); {WHERE_TO_PUT}")
            raise UserError(f"flores_dir {flores_dir} lacks {_missing_text(flores_dir, langs)}; "
                            f"put it in {_layout(flores_dir)[0]}; {WHERE_TO_PUT}")
        return found
    candidates = [os.environ.get("FLORES_DIR"), SHARED_COPY, Path(data_dir) / DATASET_PREFIX,
                  EMBEDDED]
    for candidate in candidates:
        found = _codes_in(candidate, langs)
        if found:
            _check_download(*found)
            return found
    target = Path(data_dir) / DATASET_PREFIX
    looked = ", ".join(str(c) for c in candidates if c)
    try:
        download_flores(url, target)
    except UserError as e:
        raise UserError(f"no {_missing_text(EMBEDDED, langs)} in {looked}, and "
                        f"{getattr(e, 'reason', e)}; put the file in a folder with "
                        f"metadata_devtest.tsv.gz and set $FLORES_DIR; {WHERE_TO_PUT}") from None
    found = _codes_in(target, langs)
    if found is None:
        raise UserError(f"FLORES-200 ({url}) has no {_missing_text(target, langs)}; "
                        "check the codes (FLORES-200 codes look like glg_Latn)")
    return found


def _missing_text(directory, langs):
    """The devtest files of ``langs`` that ``directory`` lacks, named ("glg_Latn.devtest.gz")."""
    layout = _layout(directory)
    missing = [wanted_file(lang) for lang in langs
               if layout is None or flores_code(layout[0], lang) is None]
    return " and ".join(dict.fromkeys(missing)) or "metadata_devtest.tsv.gz"


def _check_download(folder, codes):
    """A downloaded copy (one with SHA256SUMS): its files used here, against their SHA-256s."""
    downloads.check_manifest(folder, ["metadata_devtest.tsv.gz"] +
                             [f"{code}.devtest.gz" for code in codes
                              if not romanised_from(folder, code)],  # rus_Latn: rus_Cyrl's
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
            error = UserError(f"could not download FLORES-200 from {url} ({e}); download it "
                              "elsewhere and pass the .tar.gz (or its unpacked folder, or a "
                              "folder of {code}.devtest.gz files) with --flores-dir")
            error.reason = f"could not download FLORES-200 from {url} ({e})"
            raise error from None
        _unpack(archive, target, digest)


def _unpack(archive, target, digest):
    """The devtest files of a FLORES-200 release archive, gzipped, into ``target``, with their
    SHA-256s in ``target/SHA256SUMS`` and the archive's beside its name."""
    try:
        tar = tarfile.open(archive)
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"{archive}: not a readable tar archive ({e}); pass the FLORES-200 "
                        f"release as published ({FLORES_URL})") from None
    with atomic_path(target) as out, tar:
        out.mkdir(parents=True)
        names = []
        for member in tar:
            name = Path(member.name).name
            if member.isfile() and (name.endswith(".devtest") or name == METADATA):
                with tar.extractfile(member) as src, gzip.open(out / f"{name}.gz", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                names.append(f"{name}.gz")
        downloads.write_manifest(out, names)
        downloads.record(out / Path(archive).name, digest)  # the release's, for provenance


def read_sentences(flores, code):
    return [line for _, line in read_lines(devtest_file(flores, code))]


def read_articles(flores):
    """The article (source URL) of each sentence, in sentence order."""
    lines = [line for _, line in read_lines(_layout(flores)[1])]
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
        source = romanised_from(flores, variety_code, highres_code)
        sentences = read_sentences(flores, source or variety_code)
        if source:  # rus_Latn: the rus_Cyrl sentences in Latin letters
            from . import translation
            lang = languages.canonical(variety_code)
            sentences = translation.translate(sentences, lang, lang, "uroman", words=True)
        _write_sentences(qids, sentences, variety_file)
        log.info("wrote %s (%s)", variety_file,
                 f"{source} romanised with uroman" if source else variety_code)
    return dataset_dir, variety_file


def _write_sentences(qids, sentences, path):
    import pandas as pd
    if len(sentences) != len(qids):
        raise UserError(f"{path}: {len(sentences)} FLORES sentences for {len(qids)} metadata "
                        "lines; the FLORES files are incomplete: fetch them again")
    write_queries(pd.DataFrame({"qid": qids, "query": sentences}), path)
