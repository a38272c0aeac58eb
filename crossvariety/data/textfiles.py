"""Reading the text files a user hands over (documents, qrels, FLORES, training files) strictly.

A file named ``.gz`` is gunzipped, any other is read as it is; lines end at ``\\n`` (a ``\\r``
before it and a UTF-8 byte order mark at the start are dropped) and must be UTF-8. A file that
cannot be read so is a UserError of one line that names the file, the line or byte offset and
the fix, raised at the first bad byte while the file streams (so before the long work on it
ends, never after): a truncated or corrupt gzip file, a .gz file that holds no gzip data, gzip
data in a file not named .gz, bytes that are not UTF-8 (a Latin-1 file).
"""
import gzip
import zlib
from pathlib import Path

from ..errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"


class TextFileError(UserError):
    """A file that cannot be read as text: ``problem`` (the file, line or byte) and ``fix``."""

    def __init__(self, problem, fix):
        super().__init__(f"{problem}; {fix}")
        self.problem, self.fix = problem, fix


def read_lines(path):
    """Yield (line number, text) of the file ``path``, as the module doc says."""
    path = Path(path)
    gzipped = path.name.endswith(".gz")
    try:
        f = gzip.open(path, "rb") if gzipped else open(path, "rb")
    except OSError as e:
        raise TextFileError(f"{path}: cannot read it ({e.strerror})", "check the path") from None
    lineno, offset = 0, 0  # offset: of the line's start in the (decompressed) text
    with f:
        try:
            for lineno, raw in enumerate(f, start=1):
                if lineno == 1:
                    if not gzipped and raw.startswith(GZIP_MAGIC):
                        raise TextFileError(f"{path}: gzip data in a file not named .gz",
                                            f"rename it {path.name}.gz")
                    if raw.startswith(BOM):
                        raw, offset = raw[len(BOM):], len(BOM)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise TextFileError(*not_utf8(path, lineno, offset, e, gzipped)) from None
                offset += len(raw)
                yield lineno, text.removesuffix("\n").removesuffix("\r")
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise TextFileError(*gzip_problem(path, e, lineno)) from None


def not_utf8(path, lineno, line_offset, error, gzipped=False):
    """(problem, fix) of bytes that are not UTF-8 at ``error.start`` of line ``lineno``."""
    where = "of the decompressed text" if gzipped else "of the file"
    return (f"{path}:{lineno}: not UTF-8 (byte 0x{error.object[error.start]:02x} at byte offset "
            f"{line_offset + error.start} {where}: {error.reason})",
            "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")


def gzip_problem(path, error, lines_read=0):
    """(problem, fix) of a .gz file that gzip cannot read to its end."""
    after = f" after line {lines_read}" if lines_read else ""
    again = "fetch or write the file again"
    if isinstance(error, EOFError):
        return f"{path}: the gzip data ends early{after} (a truncated download or copy)", again
    if isinstance(error, gzip.BadGzipFile) and "Not a gzipped file" in str(error):
        return (f"{path}: not gzip data, though named .gz",
                "rename it without .gz, or compress it with gzip")
    return f"{path}: corrupt gzip data{after} ({error})", again


def check_text(path, fix=None):
    """Read ``path`` to its end as read_lines does: a TextFileError if it is not readable text
    (with ``fix`` in place of the usual one, if given)."""
    try:
        for _ in read_lines(path):
            pass
    except TextFileError as e:
        raise TextFileError(e.problem, fix or e.fix) from None
