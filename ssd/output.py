"""Writing to standard output: emit (a reader that went away is not an error, an unwritable
stdout is one line and exit 2), the not-checked lines on stderr, and the test that an output
file can be written before the check runs."""
from __future__ import annotations

import errno
import os
import sys
from typing import TYPE_CHECKING

from ssd.base import CheckError, _short

if TYPE_CHECKING:
    from ssd.model import NotChecked


def print_not_checked(not_checked: list[NotChecked]) -> None:
    for problem in not_checked:
        print(f"ssd: not checked: {problem.scope}: {problem.message}", file=sys.stderr)


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


def _stdout_to_devnull() -> None:
    """Point descriptor 1 at /dev/null, so that what is still buffered (and the interpreter's
    last flush) goes nowhere instead of failing again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    if devnull != 1:  # (1 itself when descriptor 1 was closed)
        os.dup2(devnull, 1)
        os.close(devnull)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (lives as long as the process)


def check_writable(target: str, what: str = "snapshot") -> None:
    """Fail before the check, not after it, when its output file cannot be written."""
    if target == "-":
        return
    existed = os.path.exists(target)
    try:
        with open(target, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise CheckError(f"cannot write {what} {target}: {exc.strerror or _short(exc)}") from exc
    if not existed:
        os.unlink(target)
