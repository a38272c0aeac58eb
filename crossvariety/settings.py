"""The configurator: a script's UPPERCASE constants, overridden by a config file, then by flags.

A stage script declares its settings as constants at the top (nanoGPT style), each with a help line,
then calls ``configure(globals(), HELP)``. Precedence: the constants < the config file's ``[paths]``
table and the table named after the script (``[run_mmarco]``) < command-line flags. Tables named
after other scripts are skipped, so one config file can drive every stage of an experiment;
``[pairs.NAME]`` tables define language pairs (crossvariety.data.pairs) for every script. A table
that names no script, or a key no script has, is an error.

``configure`` also makes user errors (crossvariety.errors.UserError, wrong arguments) print as one
line, ``script.py: what is wrong, and the fix``, with no traceback.

The paths of an experiment (data, translations, indexes, runs, models, FLORES) live in one place,
``PATHS`` below; every script accepts them as ``--data-dir`` etc. and as keys of ``[paths]``.
"""
import argparse
import ast
import logging
import math
import os
import sys
import tomllib
from pathlib import Path

from .data import pairs
from .errors import UsageError, UserError, install_handler, one_line

REPO_ROOT = Path(__file__).resolve().parent.parent

# The paths of an experiment, relative to the working directory unless absolute.
PATHS = {
    "data_dir": "data",  # datasets built here (e.g. the FLORES default)
    "translations_dir": "data/translations",  # variety query files: {dataset}.{variety}.tsv
    "index_dir": "indexes",  # BM25 and dense indexes
    "runs_dir": "runs",  # TREC run files and result tables
    "models_dir": "models",  # fine-tuned models
    # FLORES-200 devtest: a folder of {code}.devtest.gz, the release's .tar.gz or its unpacked
    # folder; empty = $FLORES_DIR, else ../shared/data/flores200-devtest beside the repository,
    # else the copy shipped in crossvariety/data/flores200-devtest (the paper's 13 languages), else a
    # download of the public release into data_dir.
    "flores_dir": "",
}
PATHS_HELP = {
    "data_dir": "folder where built datasets go (e.g. the FLORES default)",
    "translations_dir": "folder of variety query files, named {dataset}.{variety}.tsv",
    "index_dir": "folder of BM25 and dense indexes",
    "runs_dir": "folder of TREC run files and result tables",
    "models_dir": "folder of fine-tuned models",
    "flores_dir": "FLORES-200 devtest: a folder of {code}.devtest.gz and metadata_devtest.tsv.gz, "
                  "the release's flores200_dataset.tar.gz or its unpacked folder; default "
                  "$FLORES_DIR, else ../shared/data/flores200-devtest, else the copy shipped "
                  "with the code (the paper's 13 languages), else a download",
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
    for name, table in pair_tables.items():
        try:
            pairs.define(name, table, f"{path}: [pairs.{name}]")
        except UserError as e:
            raise ConfigError(str(e)) from None
    return config.get("paths", {}), config.get(section, {})


def _expand(paths):
    return {key: Path(os.path.expanduser(value)) if value else None
            for key, value in paths.items()}


def configure(namespace, help, positional=(), argv=None, path_keys=tuple(PATHS)):
    """Override the script's constants in ``namespace`` from --config and flags; return the paths.

    ``help`` maps every constant to its help line (a constant without one is a programming error,
    so that ``--help`` always explains every option). ``positional`` names list constants taken
    from positional arguments instead of flags. ``path_keys``: the paths the script uses, offered
    as flags (a config's [paths] may still name any).
    """
    script = Path(namespace.get("__file__", sys.argv[0])).stem
    install_handler(f"{script}.py")
    names = [k for k in help]
    missing = [k for k in namespace if k.isupper() and not k.startswith("_") and k not in help
               and isinstance(namespace[k], (str, int, float, bool, list))]
    if missing:
        raise RuntimeError(f"{script}: constants without a help line: {missing}")

    parser = argparse.ArgumentParser(
        prog=f"{script}.py", description=namespace.get("__doc__"),
        formatter_class=argparse.RawDescriptionHelpFormatter)

    def one_line_error(message):  # argparse prints its usage too; one line says enough
        parser.exit(2, f"{parser.prog}: {one_line(message)} (see --help)\n")
    parser.error = one_line_error
    parser.add_argument("--config", metavar="FILE",
                        help=f"TOML config file: its [paths] and [{script}] tables override the "
                             "defaults below; flags override the file (see configs/)")
    for name in names:
        default = namespace[name]
        text = help[name]
        if name in positional:
            parser.add_argument(name.lower(), nargs="*", metavar=name.rstrip("S"),
                                help=text, default=None)
        elif isinstance(default, bool):
            parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction,
                                default=None, help=f"{text} (default: {default})")
        elif isinstance(default, list):  # an empty default: the help line says what it means
            parser.add_argument(_flag(name), dest=name, nargs="+", default=None,
                                help=f"{text}" + (f" (default: {' '.join(default)})"
                                                  if default else ""))
        else:
            parser.add_argument(_flag(name), dest=name, type=type(default), default=None,
                                help=f"{text}" + (f" (default: {default!r})"
                                                  if default != "" else ""))
    paths_group = parser.add_argument_group("paths of the experiment") if path_keys else None
    for key, text in PATHS_HELP.items():
        if key not in path_keys:
            continue
        paths_group.add_argument(_flag(key), dest=f"path_{key}", default=None,
                                 help=f"{text}" + (f" (default: {PATHS[key]})"
                                                   if PATHS[key] else ""))
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    args = parser.parse_args(argv)

    paths = dict(PATHS)
    pairs.DEFINED.clear()
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


def script_defaults(script):
    """The settings a stage script declares at its top, {lowercase name: value}, read from its
    source (not imported: the package never imports a script)."""
    path = REPO_ROOT / f"{script}.py"
    defaults = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper():
            try:
                defaults[node.targets[0].id.lower()] = ast.literal_eval(node.value)
            except ValueError:  # HELP and computed values
                pass
    defaults.pop("help", None)
    return defaults


def experiment_settings(config, script):
    """(paths, settings) that ``script.py --config config`` runs with: the script's defaults and
    the experiment paths, overridden by the config's [paths] and [script] tables. Pairs the
    config defines are defined."""
    path_overrides, overrides = read_config(config, script)
    defaults = script_defaults(script)
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(f"{config}: [{script}] has unknown key(s) {', '.join(unknown)}")
    return _expand({**PATHS, **path_overrides}), {**defaults, **overrides}
