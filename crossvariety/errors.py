"""User errors: input that a user can fix (an argument, a config key, a file, a download).

A stage script prints a ``UserError`` as one line, ``script.py: what is wrong, and the fix``, on
stderr and exits with status 1, or 2 for a ``UsageError`` (a flag or config value that cannot be
used: an unknown pair, language, model, engine or measure), as argparse does for its own errors.
Ctrl-C prints ``script.py: interrupted: finished parts kept; rerun to resume`` and exits with
status 130. Output piped into a reader that stops early (``make_tables.py | head``) ends the
script quietly with status 141 (128 + SIGPIPE), as a shell tool does. Any other exception is a
programming error and keeps its traceback.
"""
import atexit
import os
import signal
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


INTERRUPTED = "interrupted: finished parts kept; rerun to resume"
INTERRUPTED_STATUS = 130  # 128 + SIGINT, what a shell reports for a job stopped by Ctrl-C
CLOSED_PIPE_STATUS = 141  # 128 + SIGPIPE: the reader of stdout (head) stopped reading


def _drop_stdout():
    """The reader of stdout is gone: send what is left to /dev/null, so that the flush at exit
    raises no second BrokenPipeError ("Exception ignored ...")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _flush_stdout():  # at exit: a table that fit in the buffer meets the closed pipe here
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()


def install_handler(prog):
    """Print uncaught UserErrors as ``prog: message`` (one line) and exit with their status;
    print Ctrl-C (KeyboardInterrupt) as ``prog: interrupted: ...`` and exit with 130 (every
    output is written atomically, so what is finished stays and a rerun skips it); leave every
    other exception to the default handler (a traceback)."""
    default = sys.excepthook

    def handler(kind, error, traceback):
        if issubclass(kind, BrokenPipeError):
            _drop_stdout()
            sys.exit(CLOSED_PIPE_STATUS)
        if issubclass(kind, KeyboardInterrupt):
            message, status = INTERRUPTED, INTERRUPTED_STATUS
        elif issubclass(kind, UserError):
            message, status = one_line(error), error.exit_status
        else:
            return default(kind, error, traceback)
        sys.stdout.flush()
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
        sys.exit(status)  # from the hook, this sets the status; atexit still runs
    sys.excepthook = handler
    atexit.register(_flush_stdout)


def ignore_interrupts():
    """For a worker process, which its main process ends: Ctrl-C reaches every process of the
    terminal's process group, but only the main process should answer it (with one line)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
