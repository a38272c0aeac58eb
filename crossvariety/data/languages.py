"""Language codes: which language a code names, its FLORES-200 code, and the tools it has.

A language is named by its ISO 639-1 code where it has one (fr, gl, lb), else by its ISO 639-3
code (scn, yue, ast). ISO 639-3 codes (glg), FLORES-200 codes (glg_Latn) and mMARCO's ``dt``
(Dutch) are accepted and mapped to that form; anything else is an error. The ISO tables come
from pycountry, so every language of ISO 639-3 is known, whether or not a stemmer exists for it.
"""
import functools

import pycountry

from ..errors import UsageError

# Codes the ISO tables would map elsewhere: mMARCO's Dutch, and individual languages whose
# macrolanguage the project names (FLORES: zsm_Latn Standard Malay, pes_Arab Iranian Persian).
ALIASES = {"dt": "nl", "zsm": "ms", "pes": "fa", "cmn": "zh"}
# The FLORES-200 code of the project's languages where the ISO code alone does not give it (a
# macrolanguage, or several scripts). Other languages are found by their ISO 639-3 code among
# the FLORES files (glg -> glg_Latn), see crossvariety.data.flores.
FLORES_CODES = {
    "fr": "fra_Latn", "ca": "cat_Latn", "oc": "oci_Latn", "nl": "nld_Latn", "af": "afr_Latn",
    "it": "ita_Latn", "scn": "scn_Latn", "zh": "zho_Hans", "yue": "yue_Hant", "id": "ind_Latn",
    "ms": "zsm_Latn", "en": "eng_Latn", "gd": "gla_Latn", "fa": "pes_Arab", "ru": "rus_Cyrl",
}
# Snowball stemmers (PyStemmer's algorithm names) by language.
SNOWBALL = {
    "ar": "arabic", "hy": "armenian", "eu": "basque", "ca": "catalan", "cs": "czech",
    "da": "danish", "nl": "dutch", "en": "english", "eo": "esperanto", "et": "estonian",
    "fi": "finnish", "fr": "french", "de": "german", "el": "greek", "hi": "hindi",
    "hu": "hungarian", "id": "indonesian", "ms": "indonesian", "ga": "irish", "it": "italian",
    "lt": "lithuanian", "ne": "nepali", "no": "norwegian", "nb": "norwegian", "nn": "norwegian",
    "fa": "persian", "pl": "polish", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "sr": "serbian", "st": "sesotho", "es": "spanish", "sv": "swedish", "ta": "tamil",
    "tr": "turkish", "yi": "yiddish",
}
# Languages written in Han characters, analysed as character n-grams (no word segmenter).
CJK = {"zh", "yue"}


@functools.cache
def canonical(code):
    """The project's code of a language: fr for fr/fra/fra_Latn, nl for dt, ms for zsm."""
    text = str(code).strip()
    base = text.split("_")[0].lower()
    base = ALIASES.get(base, base)
    record = None
    if len(base) == 2:
        record = pycountry.languages.get(alpha_2=base)
    elif len(base) == 3:
        record = pycountry.languages.get(alpha_3=base)
    if record is None:
        raise UsageError(f"unknown language {code!r}: use an ISO 639 code (fr, ca, gl, lb, scn, "
                         "yue), a FLORES-200 code (glg_Latn) or dt for mMARCO's Dutch")
    return ALIASES.get(record.alpha_3) or getattr(record, "alpha_2", None) or record.alpha_3


def name(code):
    """The English name of a language (Galician for gl)."""
    lang = canonical(code)
    record = pycountry.languages.get(alpha_2=lang) if len(lang) == 2 else \
        pycountry.languages.get(alpha_3=lang)
    return record.name


def iso639_3(code):
    """The ISO 639-3 code of a language (glg for gl), as FLORES-200 file names start."""
    lang = canonical(code)
    return pycountry.languages.get(alpha_2=lang).alpha_3 if len(lang) == 2 else lang


def is_flores_code(code):
    """glg_Latn: an ISO 639-3 code and a script."""
    parts = str(code).split("_")
    return len(parts) == 2 and len(parts[0]) == 3 and len(parts[1]) == 4


def stopword_language(code):
    """The stop-words package's code for a language, or None where it has no list."""
    import stop_words
    lang = canonical(code)
    lang = {"no": "nb", "nn": "nb"}.get(lang, lang)
    return lang if lang in stop_words.LANGUAGE_MAPPING and lang not in CJK | {"ja", "ko"} else None
