"""What ssd writes: to standard output, emit (a reader that went away is not an error, an
unwritable stdout is one line and exit 2); the not-checked lines on stderr; and every file
(snapshots, metrics): check_target before the check runs, write_file after it, a new file
renamed over the target, never through a link nor onto anything but a regular file."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import sys
from typing import TYPE_CHECKING, Any

from ssd.base import CheckError, _short, printable

if TYPE_CHECKING:
    from ssd.model import NotChecked


def print_not_checked(not_checked: list[NotChecked]) -> None:
    for problem in not_checked:
        print(printable(f"ssd: not checked: {problem.scope}: {problem.message}"), file=sys.stderr)


class OutputError(CheckError):
    """stdout cannot take the report: a full disk, a closed descriptor."""


def emit(text: str) -> None:
    """Write to stdout; a reader that went away (ssd ... | head -1) is not an error of ssd's,
    a stdout that cannot be written (>/dev/full, >&-) is: OutputError, one line, exit 2."""
    if not text:
        return
    try:
        if sys.stdout is None:  # started with descriptor 1 closed
            raise OSError(errno.EBADF, "standard output is closed")
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
    except (OSError, ValueError) as exc:  # ValueError: a file object closed under us
        _stdout_to_devnull()
        raise OutputError(f"cannot write the report to standard output: "
                          f"{getattr(exc, 'strerror', None) or _short(exc)}") from exc


def emit_json(doc: Any, piece: int = 1 << 20) -> None:
    """A JSON document as json.dumps(doc, indent=2) gives it, written a MiB at a time: with an
    indent, json's encoder makes a string for every token and joins them only at the end (5,000
    nodes' reports: 2 million strings, 120 MiB, for a 15 MB text)."""
    chunks: list[str] = []
    size = 0
    for chunk in json.JSONEncoder(indent=2, allow_nan=False).iterencode(doc):
        chunks.append(chunk)
        size += len(chunk)
        if size >= piece:
            emit("".join(chunks))
            chunks, size = [], 0
    emit("".join(chunks) + "\n")


def _stdout_to_devnull() -> None:
    """Point descriptor 1 at /dev/null, so that what is still buffered (and the interpreter's
    last flush) goes nowhere instead of failing again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    if devnull != 1:  # (1 itself when descriptor 1 was closed)
        os.dup2(devnull, 1)
        os.close(devnull)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (lives as long as the process)


# --- files ssd writes: a new file beside the target, then renamed over it -------------
# ssd runs as root: a target that is a symlink, a device, a FIFO or a directory is refused
# (before any work, and again when written), and nothing is written through a link: the new
# file is created O_EXCL | O_NOFOLLOW in the target's directory, written, then renamed, which
# replaces a directory entry and never follows one.

def _kind(mode: int) -> str | None:
    """What a non-regular file is, by its mode; None for a regular file."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_target(target: str, what: str) -> None:
    """Refuse, before the check runs, a target that exists and is not a regular file, or a
    directory that cannot take a new file."""
    if target == "-":
        return
    _refuse_non_regular(target, what)
    fd, temporary = _new_file(target, 0o600, what)
    os.close(fd)
    os.unlink(temporary)


def _refuse_non_regular(target: str, what: str) -> None:
    try:
        kind = _kind(os.lstat(target).st_mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CheckError(f"cannot write {what} {target}: {exc.strerror or _short(exc)}") from exc
    if kind is not None:
        raise CheckError(f"refusing to write {what} {target}: it is {kind}, not a regular file")


def write_file(target: str, data: bytes, mode: int, what: str) -> None:
    """data into target, whole or not at all: a new file (mode, whatever the umask) beside it,
    then renamed over it. Refused if target is not a regular file."""
    _refuse_non_regular(target, what)
    fd, temporary = _new_file(target, mode, what)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(temporary, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise CheckError(f"cannot write {what} {target}: {exc.strerror or _short(exc)}") from exc


def _new_file(target: str, mode: int, what: str) -> tuple[int, str]:
    directory, name = os.path.split(os.path.abspath(target))
    for _ in range(8):
        temporary = os.path.join(directory, f".{name}.ssd-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        except FileExistsError:
            continue
        except OSError as exc:
            raise CheckError(f"cannot write {what} {target}: {exc.strerror or _short(exc)}") from exc
        os.fchmod(fd, mode)  # not narrowed by the umask: metrics must be readable by node_exporter
        return fd, temporary
    raise CheckError(f"cannot write {what} {target}: no free temporary name in {directory}")
