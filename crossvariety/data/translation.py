"""Query translation between language varieties: Apertium, OpenCC and Hugging Face models, and
romanisation with uroman (one language written in Latin letters).

Every engine maps a list of queries to a list of exactly as many translations, in order. Queries
are made single-line first (tabs, line breaks, form feeds and Unicode line separators become
spaces: line tools would split or glue words at them), an empty query translates to an empty
string without reaching the engine, and the line tools' queries are separated by sentinel lines
whose count is checked: if it differs, the batch is split in halves down to single queries, so a
query never shifts onto another's line. Apertium's marks of unknown words (``*``), transfer
(``@``) and generation (``#``) errors are removed unless the marked word stood so in the query.

Any language pair works where an engine has it: Apertium's installed modes are looked up by the
languages' ISO codes (gl->pt finds the mode gl-pt of apertium-pt-gl), NLLB-200 by their FLORES-200
codes.

``uroman`` writes a text in Latin letters without changing its language (crossvariety.data.
romanization), cached like the other engines.
"""
import concurrent.futures
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import UsageError, UserError
from . import romanization
from .languages import FLORES_CODES, canonical, iso639_3
from ..models import from_pretrained, resolve_model

log = logging.getLogger(__name__)

ENGINES = ["apertium", "opencc", "hf", "uroman"]
DEFAULT_HF_MODEL = "nllb-200-600m"  # crossvariety.models: facebook/nllb-200-distilled-600M
# Apertium modes in Debian, by (source, target) language, with the package that installs them.
# Other pairs work too when their mode is installed (see apertium_mode).
APERTIUM = {
    ("fr", "ca"): ("fra-cat", "apertium-fra-cat"), ("ca", "fr"): ("cat-fra", "apertium-fra-cat"),
    ("nl", "af"): ("nld-afr", "apertium-afr-nld"), ("af", "nl"): ("afr-nld", "apertium-afr-nld"),
    ("fr", "oc"): ("fra-oci", "apertium-oci-fra"), ("oc", "fr"): ("oci-fra", "apertium-oci-fra"),
    ("id", "ms"): ("ind-zlm", "apertium-ind-zlm"), ("ms", "id"): ("zlm-ind", "apertium-ind-zlm"),
    ("pt", "gl"): ("pt-gl", "apertium-pt-gl"), ("gl", "pt"): ("gl-pt", "apertium-pt-gl"),
    ("es", "gl"): ("es-gl", "apertium-es-gl"), ("gl", "es"): ("gl-es", "apertium-es-gl"),
    ("es", "ast"): ("spa-ast", "apertium-spa-ast"),
}
# OpenCC converts script only: Cantonese (Hong Kong Traditional) <-> Chinese (Simplified).
OPENCC = {("yue", "zh"): "hk2s.json", ("zh", "yue"): "s2hk.json"}

SENTINEL = "\u2042"  # the asterism: no Apertium mode nor OpenCC changes it
_LINE_BREAKING = re.compile(r"[\t\n\r\v\f\x00\x1c-\x1f\x85\u2028\u2029]")
_MARKED = re.compile(r"[*@#](\w[\w'-]*)")


def single_line(text):
    """The query on one line; a query that is only the sentinel would read as a separator."""
    text = _LINE_BREAKING.sub(" ", text).strip()
    return "" if text == SENTINEL else text


class TranslationError(UserError):
    """An engine that cannot run here; the message says what to install or choose instead."""


def apertium_modes():
    """The Apertium modes installed here (empty without Apertium)."""
    if shutil.which("apertium") is None:
        return set()
    return set(subprocess.run(["apertium", "-l"], capture_output=True, text=True).stdout.split())


def apertium_mode(src, tgt):
    """The Apertium mode for src -> tgt: Debian's (APERTIUM), else an installed mode named by
    the languages' ISO 639-1 or 639-3 codes (gl-pt, spa-ast); None if there is none."""
    if (src, tgt) in APERTIUM:
        return APERTIUM[src, tgt][0]
    installed = apertium_modes()
    return next((f"{a}-{b}" for a in dict.fromkeys([src, iso639_3(src)])
                 for b in dict.fromkeys([tgt, iso639_3(tgt)]) if f"{a}-{b}" in installed), None)


def covers(engine, src, tgt):
    """Whether an engine translates src -> tgt (hf: the model decides, NLLB-200 knows 200;
    uroman: a language into itself in Latin letters, zh -> zho_Latn)."""
    src, tgt = canonical(src), canonical(tgt)
    if engine == "uroman":
        return src == tgt
    if engine == "apertium":
        return apertium_mode(src, tgt) is not None
    if engine == "opencc":
        return (src, tgt) in OPENCC
    if engine == "hf":
        return True
    raise UsageError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")


def remove_apertium_marks(translation, source):
    """Drop Apertium's *, @ and # marks, but keep a mark that the query itself had (#tag)."""
    return _MARKED.sub(lambda m: m.group(0) if m.group(0) in source else m.group(1), translation)


def run_line_tool(command, lines):
    """Run a line-by-line tool on single-line, non-empty ``lines``; one output per input.

    A sentinel line (passed unchanged by every Apertium mode and by OpenCC) separates the
    queries, so a query whose translation the tool splits over two lines is joined back, and a
    dropped, merged or lost line shows as a missing or empty segment: then the batch is halved,
    down to single queries, instead of letting one query's output shift onto another's line.
    """
    proc = subprocess.run(command, input="".join(f"{line}\n{SENTINEL}\n" for line in lines),
                          capture_output=True, text=True, encoding="utf-8")
    if proc.returncode != 0:
        raise TranslationError(f"{' '.join(command)} failed ({proc.returncode}): "
                               f"{proc.stderr.strip()[-500:]}")
    segments, current = [], []
    for line in proc.stdout.split("\n"):  # not splitlines(): U+2028 is no line break here
        if line.strip() == SENTINEL:
            segments.append(" ".join(part for part in current if part.strip()))
            current = []
        else:
            current.append(line)
    if len(segments) == len(lines) and all(segments):
        return segments
    if len(lines) == 1:
        return [" ".join(segments + current).strip()]  # "" if the tool lost it: caller decides
    log.debug("%s: %d queries in, %d segments out; translating in halves", command[0],
              len(lines), len(segments))
    middle = len(lines) // 2
    return run_line_tool(command, lines[:middle]) + run_line_tool(command, lines[middle:])


def _tool_command(engine, src, tgt):
    if engine == "apertium":
        mode = apertium_mode(src, tgt)
        if mode is None:
            raise TranslationError(f"Apertium has no {src}->{tgt} pair here: Debian packages cover "
                                   + ", ".join(f"{s}->{t}" for s, t in APERTIUM)
                                   + f"; install the mode {src}-{tgt} if Apertium has one "
                                   "(apt-cache search apertium), or use --engine hf")
        package = APERTIUM.get((src, tgt), (mode, f"the package of the mode {mode}"))[1]
        if shutil.which("apertium") is None:
            raise TranslationError(f"apertium is not installed: sudo apt-get install apertium "
                                   f"{package}")
        if mode not in apertium_modes():
            raise TranslationError(f"the Apertium mode {mode} is not installed: "
                                   f"sudo apt-get install {package}")
        return ["apertium", "-u", mode]
    if (src, tgt) not in OPENCC:
        raise TranslationError(f"OpenCC converts Chinese script only: {', '.join(f'{s}->{t}' for s, t in OPENCC)}")
    if shutil.which("opencc") is None:
        raise TranslationError("opencc is not installed: sudo apt-get install opencc")
    return ["opencc", "-c", OPENCC[src, tgt]]


def _translate_with_tool(engine, texts, src, tgt, workers, chunk_size, finished=None):
    command = _tool_command(engine, src, tgt)
    chunks = [texts[i:i + chunk_size] for i in range(0, len(texts), chunk_size)]
    out = []
    # One Apertium pipeline already keeps ~4 cores busy (one process per stage).
    workers = workers or max(1, (os.cpu_count() or 1) // 4)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool, \
            tqdm(total=len(texts), unit="query", desc=f"{engine} {src}->{tgt}",
                 disable=not log.isEnabledFor(logging.INFO)) as progress:
        for chunk, translated in zip(chunks, pool.map(lambda c: run_line_tool(command, c), chunks)):
            translated = [remove_apertium_marks(t, s) if engine == "apertium" else t
                          for s, t in zip(chunk, translated)]
            out.extend(translated)
            if finished:
                finished(chunk, translated)
            progress.update(len(chunk))
    return out


def _translate_with_hf(texts, src, tgt, model, batch_tokens, num_beams, max_length,
                       finished=None):
    """Batched generation with a Hugging Face seq2seq model (NLLB-200 or a one-direction
    OPUS-MT/Marian model): longest first, batches bounded by a token budget, bf16 on a GPU."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = from_pretrained(AutoTokenizer, model)
    seq2seq = from_pretrained(AutoModelForSeq2SeqLM, model, dtype=dtype).to(device).eval()
    generate_args = {"num_beams": num_beams, "max_new_tokens": max_length}
    vocab = tokenizer.get_vocab()
    if "eng_Latn" in vocab:  # NLLB: FLORES-200 language codes are tokens
        codes = {lang: _nllb_code(vocab, lang) for lang in (src, tgt)}
        unknown = [lang for lang, code in codes.items() if code is None]
        if unknown:
            raise TranslationError(f"{model} has no language code for {', '.join(unknown)}; "
                                   "NLLB-200 covers the FLORES-200 languages only")
        tokenizer.src_lang = codes[src]
        generate_args["forced_bos_token_id"] = tokenizer.convert_tokens_to_ids(codes[tgt])
    log.info("translating %d queries %s->%s with %s on %s (%s)", len(texts), src, tgt, model,
             device, dtype)
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    out = [None] * len(texts)
    with tqdm(total=len(texts), unit="query", desc=f"hf {src}->{tgt}",
              disable=not log.isEnabledFor(logging.INFO)) as progress:
        start = 0
        while start < len(order):
            # the longest query comes first, so it bounds the batch's padded size
            size = max(1, batch_tokens // (len(encoded[order[start]]) * max(1, num_beams)))
            batch = order[start:start + size]
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]},
                                   return_tensors="pt").to(device)
            with torch.inference_mode():
                generated = seq2seq.generate(**inputs, **generate_args)
            for i, text in zip(batch, tokenizer.batch_decode(generated, skip_special_tokens=True)):
                out[i] = text
            if finished:
                finished([texts[i] for i in batch], [out[i] for i in batch])
            progress.update(len(batch))
            start += size
    return out


def _nllb_code(vocab, lang):
    """NLLB's token for a language: its FLORES-200 code (the project's, else the only
    {ISO 639-3}_{script} token of the vocabulary)."""
    if FLORES_CODES.get(lang) in vocab:
        return FLORES_CODES[lang]
    pattern = re.compile(rf"{iso639_3(lang)}_[A-Z][a-z]{{3}}")
    found = [token for token in vocab if pattern.fullmatch(token)]
    return found[0] if len(found) == 1 else None


class TranslationCache:
    """Translations by content hash (engine, model, direction, query text), in SQLite: a re-run
    translates only queries it has not seen, and an interrupted run keeps what it finished."""

    def __init__(self, path):
        self.path = Path(path)
        self._db = None

    @property
    def db(self):
        """The database, created on the first translation to store (a run that fails before
        translating anything leaves no file)."""
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("CREATE TABLE IF NOT EXISTS translations "
                             "(key TEXT PRIMARY KEY, translation TEXT NOT NULL)")
        return self._db

    @staticmethod
    def key(system, text):
        return hashlib.sha256(f"{system}\x00{text}".encode("utf-8")).hexdigest()

    def get(self, system, texts):
        if self._db is None and not self.path.is_file():
            return [None] * len(texts)
        found = {}
        keys = [self.key(system, t) for t in texts]
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            rows = self.db.execute("SELECT key, translation FROM translations WHERE key IN "
                                   f"({','.join('?' * len(part))})", part).fetchall()
            found.update(rows)
        return [found.get(k) for k in keys]

    def put(self, system, texts, translations):
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO translations VALUES (?, ?)",
                                [(self.key(system, s), t) for s, t in zip(texts, translations)])


def translate(texts, src, tgt, engine, model=None, cache=None, refresh=False, workers=0,
              chunk_size=1000, batch_tokens=16384, num_beams=4, max_length=256, lcode=False,
              segment="", words=False):
    """Translate ``texts`` from ``src`` to ``tgt``; returns exactly one string per text, in order.
    ``refresh`` translates everything again (and updates the cache). uroman only: ``lcode``
    (uroman's rules of the language), ``segment`` (romanization.segment_text first), ``words`` (word by
    word, for documents); see the module doc."""
    src, tgt = canonical(src), canonical(tgt)
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "uroman" and src != tgt:
        raise UsageError(f"uroman writes a language in Latin letters, it does not translate: "
                         f"the target must be the source's language ({src}), not {tgt}")
    if engine != "uroman" and (lcode or segment or words):
        raise UsageError(f"lcode, segmentation and word-by-word romanisation are uroman's "
                         f"options, not {engine}'s")
    if segment:
        romanization.segment_text("", segment, src)  # an unknown method or language fails before the work
    model = resolve_model(model or DEFAULT_HF_MODEL) if engine == "hf" else \
        romanization.uroman_system(lcode, segment, words) if engine == "uroman" else None
    system = f"{engine}:{model or ''}:{src}-{tgt}"
    clean = [single_line(t) for t in texts]
    todo = sorted({t for t in clean if t})
    done = dict(zip(todo, cache.get(system, todo))) if cache and not refresh else {}
    missing = [t for t in todo if done.get(t) is None]
    log.info("%s %s->%s: %d queries, %d distinct, %d from the cache, %d to translate", engine,
             src, tgt, len(texts), len(todo), len(todo) - len(missing), len(missing))
    if missing:
        # each finished chunk goes to the cache at once: an interrupted run keeps it
        finished = (lambda sources, results: cache.put(
            system, sources, [single_line(t) for t in results])) if cache else None
        if engine == "hf":
            new = _translate_with_hf(missing, src, tgt, model, batch_tokens, num_beams, max_length,
                                     finished)
        elif engine == "uroman":
            new = romanization.romanize_texts(missing, src, lcode, segment, words, workers,
                                              chunk_size, finished)
        else:
            new = _translate_with_tool(engine, missing, src, tgt, workers, chunk_size, finished)
        new = [single_line(t) for t in new]
        if len(new) != len(missing):  # the engines guarantee this; a break here is a bug
            raise TranslationError(f"{engine} returned {len(new)} translations for {len(missing)}")
        done.update(zip(missing, new))
    return [done[t] if t else "" for t in clean]


def translate_queries(queries, src, tgt, engine, model=None, cache_path=None, **options):
    """A (qid, query) DataFrame translated, same qids and order. A query that comes back empty
    is an error (a query file cannot hold an empty query)."""
    cache = TranslationCache(cache_path) if cache_path else None
    translated = translate(list(queries["query"]), src, tgt, engine, model, cache, **options)
    empty = [qid for qid, t in zip(queries.qid, translated) if not t]
    if empty:
        raise TranslationError(f"{engine} {src}->{tgt} gave empty translations for "
                               f"{len(empty)} queries: qids {', '.join(map(str, empty[:10]))}")
    return queries.assign(query=translated)
