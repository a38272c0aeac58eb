"""User errors: input that a user can fix (an argument, a config key, a file, a download).

A stage script prints a ``UserError`` as one line, ``script.py: what is wrong, and the fix``, on
stderr and exits with status 1, or 2 for a ``UsageError`` (a flag or config value that cannot be
used: an unknown pair, language, model, engine or measure), as argparse does for its own errors.
Any other exception is a programming error and keeps its traceback.
"""
import sys


class UserError(ValueError):
    """Input that cannot be used as given; the message names the input and says the fix."""

    exit_status = 1


class UsageError(UserError):
    """A command-line flag or config value that cannot be used."""

    exit_status = 2


def one_line(message):
    """A message on one line: a multi-line report (every bad line of a file) joined by ' | '."""
    parts = [part.strip() for part in str(message).splitlines() if part.strip()]
    return "".join(part + ("" if i == len(parts) - 1 else " " if part.endswith(":") else " | ")
                   for i, part in enumerate(parts))


def install_handler(prog):
    """Print uncaught UserErrors as ``prog: message`` (one line) and exit with their status;
    leave every other exception to the default handler (a traceback)."""
    default = sys.excepthook

    def handler(kind, error, traceback):
        if not issubclass(kind, UserError):
            return default(kind, error, traceback)
        sys.stdout.flush()
        print(f"{prog}: {one_line(error)}", file=sys.stderr, flush=True)
        sys.exit(error.exit_status)  # from the hook, this sets the status; atexit still runs
    sys.excepthook = handler
