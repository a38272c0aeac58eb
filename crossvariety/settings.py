"""The configurator: a script's UPPERCASE constants, overridden by a config file, then by flags.

A stage script declares its settings as constants at the top (nanoGPT style), each described by
its comment, then calls ``configure(globals())``. The comment on a constant's line, with the
comment-only lines aligned under it that continue it, is the setting's one description: its
``--help`` line (configure reads the script's own source for it). Precedence: the constants < the
config file's ``[paths]`` table and the table named after the script (``[run_mmarco]``) <
command-line flags. Tables named after other scripts are skipped, so one config file can drive
every stage of an experiment; ``[pairs.NAME]`` tables define language pairs
(crossvariety.data.pairs) for every script. A table that names no script, or a key no script
has, is an error. ``--show-config`` prints the resolved settings and paths as JSON and exits;
``experiment_settings`` asks a script for them that way (the package never imports or parses a
script).

``configure`` also makes user errors (crossvariety.errors.UserError, wrong arguments) print as one
line, ``script.py: what is wrong, and the fix``, with no traceback.

The paths of an experiment (data, translations, indexes, runs, models, FLORES) live in one place,
``PATHS`` below; every script accepts them as ``--data-dir`` etc. and as keys of ``[paths]``.
"""
import argparse
import ast
import copy
import functools
import io
import json
import logging
import math
import os
import sys
import tokenize
import tomllib
from pathlib import Path

from .errors import UsageError, UserError, install_handler, one_line

REPO_ROOT = Path(__file__).resolve().parent.parent

# The paths of an experiment, relative to the working directory unless absolute; each one's
# comment is its --help line.
PATHS = {
    "data_dir": "data",  # folder where built datasets go (e.g. the FLORES default)
    "translations_dir": "data/translations",  # folder of variety query files, named
                                              # {dataset}.{variety}.tsv
    "index_dir": "indexes",  # folder of BM25 and dense indexes
    "runs_dir": "runs",  # folder of TREC run files and result tables
    "models_dir": "models",  # folder of fine-tuned models
    "flores_dir": "",  # FLORES-200 devtest: a folder of {code}.devtest.gz and
                       # metadata_devtest.tsv.gz, the release's flores200_dataset.tar.gz or its
                       # unpacked folder; empty = $FLORES_DIR, else
                       # ../shared/data/flores200-devtest beside the repository, else the copy
                       # shipped in crossvariety/data/flores200-devtest (the paper's 13
                       # languages), else a download of the public release into data_dir
}


class ConfigError(UsageError):
    """A config file or flag that cannot be used; the message names the file, key and fix."""


def _flag(name):
    return "--" + name.lower().replace("_", "-")


def _coerce(value, default, where):
    """Check a config-file value against the type of the constant it overrides."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, list):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [str(v) for v in value]
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise ConfigError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


# Whole-number settings that are counts but for which 0 means something (a seed, no warmup, no
# rank skipped): every other count whose default is 1 or more must stay 1 or more.
ZERO_IS_A_VALUE = {"SEED", "SKIP_TOP", "WARMUP_STEPS"}


def check_value(value, default, where, help="", zero=False):
    """Refuse a value that no setting of its kind can take, judged by the constant's default:
    a negative whole number (a count; where the default is negative, e.g. -1 = auto, that value
    is allowed too), 0 where the default is a positive count and 0 means nothing (unless
    ``zero``), a NaN or infinite number, an empty list where the default names something.
    ``where`` says where the value was set (``--num-results `` or ``FILE: [table] key = ``)."""
    meaning = f" ({help})" if help else ""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if value < 0 and value != default:
            least = "1 or more" if default > 0 and not zero else "0 or more"
            raise ConfigError(f"{where}{value}: a count must be {least}{meaning}")
        if value == 0 and default > 0 and not zero:
            raise ConfigError(f"{where}0: this count must be 1 or more{meaning}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}{value}: not a finite number{meaning}")
    elif isinstance(value, list) and not value and default:
        raise ConfigError(f"{where}[]: an empty list names nothing; name at least one (the "
                          f"default is {' '.join(map(str, default))})")


def script_names():
    """The names a config table may have: the stage scripts and benchmarks of the repository."""
    return {p.stem for p in [*REPO_ROOT.glob("*.py"), *REPO_ROOT.glob("benchmarks/*.py")]}


def config_tables(path, section="SCRIPT"):
    """The tables of a TOML config file, checked: every table is [paths], [pairs.NAME] or named
    after a script."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} " + ("is a folder; name a .toml file in it"
                                                    if path.is_dir() else "does not exist")
                          + " (configs/ holds the examples)")
    raw = path.read_bytes()
    try:
        config = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x} at byte offset "
                          f"{e.start}); TOML files are UTF-8: re-save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    loose = [k for k, v in config.items() if not isinstance(v, dict)]
    if loose:
        raise ConfigError(f"{path}: keys {loose} stand outside any table; put them under "
                          f"[paths] or [{section}] (the script's name)")
    unknown = sorted(set(config) - {"paths", "pairs"} - script_names())
    if unknown:
        raise ConfigError(f"{path}: table(s) [{'], ['.join(unknown)}] name no script of the "
                          f"repository; use [paths], [pairs.NAME] or a script's name such as "
                          f"[{section}]")
    return config


def read_config(path, section):
    """Return (paths overrides, section overrides) from a TOML config file, after defining the
    language pairs of its [pairs.NAME] tables."""
    config = config_tables(path, section)
    pair_tables = config.get("pairs", {})
    if not isinstance(pair_tables, dict):
        raise ConfigError(f"{path}: define pairs as tables [pairs.NAME]")
    if pair_tables:
        from .data import pairs  # (imported only here: --show-config stays quick)
    for name, table in pair_tables.items():
        try:
            pairs.define(name, table, f"{path}: [pairs.{name}]")
        except UserError as e:
            raise ConfigError(str(e)) from None
    return config.get("paths", {}), config.get(section, {})


def _expand(paths):
    return {key: Path(os.path.expanduser(value)) if value else None
            for key, value in paths.items()}


# The values a setting may have: literals of these types (a computed or other value is not a
# setting).
SETTING_TYPES = (str, int, float, bool, list)


def _comments(source):
    """{line number: (column, text, alone)} of the comments of ``source``: text without the #,
    alone = nothing but the comment on its line."""
    lines = source.splitlines()
    found = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            found[row] = (column, token.string[1:].strip(), not lines[row - 1][:column].strip())
    return found


def _described(comments, first, last, name, where):
    """The description of the code on lines first..last: its comments there, then the
    comment-only lines right below aligned under the last of them, joined with spaces; "" if it
    has none. An indented comment-only line below that is not aligned is a programming error."""
    texts = [comments[row] for row in range(first, last + 1) if row in comments]
    if not texts:
        return ""
    column = texts[-1][0]
    row = last + 1
    while row in comments and comments[row][2] and comments[row][0] > 0:
        if comments[row][0] != column:
            raise RuntimeError(f"{where}:{row}: this comment continues the description of {name} "
                               f"but is not aligned under its first line (column {column + 1})")
        texts.append(comments[row])
        row += 1
    return " ".join(text for _, text, _ in texts if text)


def _is_configure_call(node):
    return any(isinstance(n, ast.Call) and (
        isinstance(n.func, ast.Attribute) and n.func.attr == "configure"
        or isinstance(n.func, ast.Name) and n.func.id == "configure") for n in ast.walk(node))


def script_help(path):
    """{NAME: description} of the settings a script at ``path`` declares: its module-level
    assignments of literal values (str, int, float, bool, list) to UPPERCASE names before its
    ``configure(...)`` call, each described by its comment ("" for a constant without one).
    Only ``configure`` reads a script's source, the script's own."""
    source = Path(path).read_text(encoding="utf-8")
    comments = _comments(source)
    found = {}
    for node in ast.parse(source, filename=str(path)).body:
        if _is_configure_call(node):
            break
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if not name.isupper() or name.startswith("_"):
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError:  # a computed value: not a setting
            continue
        if isinstance(value, SETTING_TYPES):
            found[name] = _described(comments, node.lineno, node.end_lineno, name, path)
    return found


@functools.cache
def paths_help():
    """{key: description} of PATHS, from the comments of its entries above."""
    lines = Path(__file__).read_text(encoding="utf-8").splitlines()
    first = lines.index("PATHS = {")  # only that statement is read: quick
    source = "\n" * first + "\n".join(lines[first:lines.index("}", first) + 1]) + "\n"
    comments = _comments(source)
    node = ast.parse(source).body[0]
    return {ast.literal_eval(key): _described(comments, key.lineno, value.end_lineno,
                                              ast.literal_eval(key), __file__)
            for key, value in zip(node.value.keys, node.value.values)}


def _help_text(text):
    return text.replace("%", "%%")  # argparse formats help lines with %


def configure(namespace, positional=(), argv=None, path_keys=tuple(PATHS)):
    """Override the script's constants in ``namespace`` from --config and flags; return the paths.

    The settings are the constants that the script (``namespace["__file__"]``) declares before
    this call; each one's comment is its help line (a constant without one is a programming
    error, so that ``--help`` always explains every option). ``positional`` names list constants
    taken from positional arguments instead of flags. ``path_keys``: the paths the script uses,
    offered as flags (a config's [paths] may still name any). With ``--show-config`` it prints
    the resolved settings and paths as JSON and exits.
    """
    source = namespace.get("__file__")
    if not source or not Path(source).is_file():
        raise RuntimeError(f"configure() reads the settings' descriptions from the script's "
                           f"source, and there is none to read ({source!r})")
    script = Path(source).stem
    install_handler(f"{script}.py")
    help = script_help(source)
    missing = [name for name, text in help.items() if not text]
    if missing:
        raise RuntimeError(f"{script}: constants without a help line (a comment after each): "
                           f"{missing}")
    names = list(help)

    parser = argparse.ArgumentParser(
        prog=f"{script}.py", description=namespace.get("__doc__"),
        formatter_class=argparse.RawDescriptionHelpFormatter)

    def one_line_error(message):  # argparse prints its usage too; one line says enough
        parser.exit(2, f"{parser.prog}: {one_line(message)} (see --help)\n")
    parser.error = one_line_error
    parser.add_argument("--config", metavar="FILE",
                        help=f"TOML config file: its [paths] and [{script}] tables override the "
                             "defaults below; flags override the file (see configs/)")
    parser.add_argument("--show-config", action="store_true",
                        help="print the settings and paths this command would run with, as JSON "
                             "(after --config and the flags), and exit")
    for name in names:
        default = namespace[name]
        text = _help_text(help[name])
        if name in positional:
            parser.add_argument(name.lower(), nargs="*", metavar=name.rstrip("S"),
                                help=text, default=None)
        elif isinstance(default, bool):
            parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction,
                                default=None, help=f"{text} (default: {default})")
        elif isinstance(default, list):  # an empty default: the help line says what it means
            parser.add_argument(_flag(name), dest=name, nargs="+", default=None,
                                help=f"{text}" + (_help_text(f" (default: {' '.join(default)})")
                                                  if default else ""))
        else:
            parser.add_argument(_flag(name), dest=name, type=type(default), default=None,
                                help=f"{text}" + (_help_text(f" (default: {default!r})")
                                                  if default != "" else ""))
    paths_group = parser.add_argument_group("paths of the experiment") if path_keys else None
    for key, text in paths_help().items():
        if key not in path_keys:
            continue
        paths_group.add_argument(_flag(key), dest=f"path_{key}", default=None,
                                 help=_help_text(text + (f" (default: {PATHS[key]})"
                                                         if PATHS[key] else "")))
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    args = parser.parse_args(argv)

    paths = dict(PATHS)
    defined = sys.modules.get(f"{__package__}.data.pairs")  # not imported: nothing defined
    if defined:
        defined.DEFINED.clear()
    defaults = {name: namespace[name] for name in names}
    origin = {}  # where a setting's value came from, for the error that refuses it
    if args.config:
        path_overrides, overrides = read_config(args.config, script)
        for key, value in path_overrides.items():
            if key not in PATHS:
                raise ConfigError(f"{args.config}: [paths] has unknown key {key!r}; "
                                  f"known keys: {', '.join(PATHS)}")
            paths[key] = _coerce(value, PATHS[key], f"{args.config}: [paths] {key}")
        for key, value in overrides.items():
            name = key.upper()
            if name not in help:
                raise ConfigError(f"{args.config}: [{script}] has unknown key {key!r}; "
                                  f"known keys: {', '.join(n.lower() for n in names)}")
            namespace[name] = _coerce(value, namespace[name], f"{args.config}: [{script}] {key}")
            origin[name] = f"{args.config}: [{script}] {key} = "
    for name in names:
        value = getattr(args, name.lower() if name in positional else name)
        if value is not None and not (name in positional and value == []):
            namespace[name] = value
            origin[name] = _flag(name) + " "
    for name in origin:
        check_value(namespace[name], defaults[name], origin[name], help[name],
                    zero=name in ZERO_IS_A_VALUE)
    for key in path_keys:
        if getattr(args, f"path_{key}") is not None:
            paths[key] = getattr(args, f"path_{key}")
    if args.show_config:
        print(json.dumps({"script": script,
                          "settings": {name.lower(): namespace[name] for name in names},
                          "paths": {key: str(value) if value else None
                                    for key, value in _expand(paths).items()}},
                         indent=1, ensure_ascii=False))
        sys.exit(0)

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    # PyTerrier logs at INFO through the root logger too; keep ours readable.
    for noisy in ("pyterrier", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.quiet:
        # ir_datasets resets its logger's level on first use, but keeps its filters. A failed
        # download is reported by our own error, which says what to fetch and where to put it.
        logging.getLogger("ir_datasets").addFilter(lambda record: record.levelno >= logging.ERROR)
    paths = _expand(paths)
    paths["config"] = Path(args.config) if args.config else None  # the file itself, if any
    # the paths given as flags: they override other configs' [paths] too (make_tables.py)
    paths["flags"] = {key: paths[key] for key in path_keys
                      if getattr(args, f"path_{key}") is not None}
    return paths


# Answers of --show-config kept between processes (make_tables.py --plan asks every config's
# scripts): valid while the code, the config file and the home folder are the same.
SHOWN_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
    "crossvariety" / "show-config"


@functools.cache
def _code_digest():
    """SHA-256 of the scripts' and the package's code: what --show-config's answer depends on,
    besides the config file."""
    import hashlib
    digest = hashlib.sha256()
    for path in sorted([*REPO_ROOT.glob("*.py"), *(REPO_ROOT / "crossvariety").rglob("*.py")]):
        digest.update(f"{path.relative_to(REPO_ROOT)}\0".encode() + path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def _show_config(script, config, absolute, mtime_ns):
    """``script.py --config config --show-config``'s answer, once per version of the file
    (``config`` as the caller named it, for the error messages); an answer is kept in
    SHOWN_CACHE, keyed by the code, the config's bytes and how it was named."""
    import hashlib
    import subprocess  # (here: the scripts themselves never need it)
    key = hashlib.sha256("\0".join([_code_digest(), sys.executable, str(Path.home()), script,
                                     config, absolute]).encode()
                         + Path(absolute).read_bytes()).hexdigest()
    cached = SHOWN_CACHE / f"{key}.json"
    try:
        return json.loads(cached.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    proc = subprocess.run([sys.executable, str(REPO_ROOT / f"{script}.py"), "--config", config,
                           "--show-config"], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise ConfigError(lines[-1] if lines else f"{script}.py --config {config} --show-config "
                                                  f"failed (exit status {proc.returncode})")
    shown = json.loads(proc.stdout)
    try:  # written whole or not at all; a cache that cannot be written is only slower
        SHOWN_CACHE.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{cached.name}.{os.getpid()}")
        partial.write_text(proc.stdout, encoding="utf-8")
        os.replace(partial, cached)
    except OSError:
        pass
    return shown


def _shown(config, script):
    path = Path(config).resolve()
    return _show_config(script, str(config), str(path), path.stat().st_mtime_ns)


def experiment_settings(config, script):
    """(paths, settings) that ``script.py --config config`` runs with: the script's defaults and
    the experiment paths, overridden by the config's [paths] and [script] tables, as the script
    itself resolves them (``--show-config``, in a subprocess; cached per version of the file).
    Paths are Paths (None where empty), settings {lowercase name: value}. Pairs the config
    defines are defined in this process too."""
    defined = sys.modules.get(f"{__package__}.data.pairs")
    if defined:  # only this config's pairs, as in the script's own process (pairs = ["all"])
        defined.DEFINED.clear()
    read_config(config, script)  # checks its tables; defines its pairs here
    shown = _shown(config, script)
    paths = {key: Path(value) if value else None for key, value in shown["paths"].items()}
    return paths, copy.deepcopy(shown["settings"])


def experiment_settings_many(configs_and_scripts, workers=None):
    """``experiment_settings(config, script)`` of every (config, script) pair, in order, the
    scripts asked concurrently (a subprocess each; ``workers`` threads, default one per core).
    The answers are cached: a caller that then asks experiment_settings one pair at a time (as
    crossvariety.experiments.config_outputs does) finds them ready. The first pair that fails
    raises its ConfigError."""
    from concurrent.futures import ThreadPoolExecutor
    pairs_ = list(configs_and_scripts)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        futures = [pool.submit(_shown, config, script) for config, script in pairs_]
    for future in futures:
        future.result()  # the first failure, in order
    return [experiment_settings(config, script) for config, script in pairs_]
