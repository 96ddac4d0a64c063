"""The ``inspector`` command: parses arguments, runs one command, prints its result.

:mod:`~inspector.cli.parser` holds the arguments (argparse only); each command is one module
in :mod:`inspector.cli.commands` with a ``run(args) -> int`` that calls library functions and
prints. User errors (:class:`~inspector.errors.InspectorError`) and failed file operations become
one line on stderr and exit status 1; a closed pipe (``| head``) is success.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

from inspector.checks import printable, printable_lines
from inspector.cli.parser import _EMPTY_PATH, build_parser
from inspector.errors import InspectorError
from inspector.fileio import describe_os_error

EXIT_USER_ERROR = 1
COMMANDS = ("train", "info", "analyze", "prune", "dashboard", "report")

_build_parser = build_parser  # the name tests and older scripts use

__all__ = ["COMMANDS", "EXIT_USER_ERROR", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _run(argv)
        sys.stdout.flush()  # here, not at interpreter exit, so that a closed pipe is caught below
        return status
    except BrokenPipeError:
        # The reader (`| head`) left: like ripgrep, that is success, for every command. Python's
        # documented recipe: point stdout at devnull so the exit flush stays silent, no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:  # --help, --version: their text must meet a closed pipe here, not at exit
        sys.stdout.flush()
        raise
    for name in ("checkpoint", "paths", "path", "out", "data", "dataset"):
        values = getattr(args, name, None)
        if any(v is _EMPTY_PATH or v == "" for v in (values if isinstance(values, list) else [values])):
            what = f"--{name}" if name in ("out", "data", "dataset") else name.upper()
            print(f"inspector: error: {what}: empty path; give a file or folder name", file=sys.stderr)
            return EXIT_USER_ERROR
    try:
        # a command's module is imported only when it runs, so that --help stays quick
        command = importlib.import_module(f"inspector.cli.commands.{args.command}")
        with escaped_stdout():
            status = command.run(args)
            sys.stdout.flush()
        return status
    except BrokenPipeError:
        raise
    except InspectorError as exc:
        print(f"inspector: error: {printable(str(exc))}", file=sys.stderr)  # one line, whatever a file held
        return EXIT_USER_ERROR
    except OSError as exc:  # a file the user named or a folder we write: one line, never a traceback
        print(f"inspector: error: {printable(_os_error_line(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("inspector: interrupted", file=sys.stderr)
        return 130


class EscapedStream:
    """A text stream that writes to ``stream`` with every control character but the line break escaped
    (:func:`~inspector.checks.printable_lines`): what a command prints quotes names read from files
    (feature, class and layer names, column headers, labels), and none of them may drive the terminal.
    ``unescaped`` is the stream itself, for documents that are not terminal text (HTML, JSON to ``-``)."""

    def __init__(self, stream: TextIO) -> None:
        self.unescaped = stream

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # as a text stream answers: click probes write(b"") to find a binary one
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.unescaped.write(printable_lines(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, buffer: the stream's own
        return getattr(self.unescaped, name)


@contextlib.contextmanager
def escaped_stdout() -> Iterator[None]:
    """``sys.stdout`` as an :class:`EscapedStream` for the duration (errors and notes on stderr are
    escaped where they are printed)."""
    original = sys.stdout
    sys.stdout = EscapedStream(original)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = original


def unescaped_stdout() -> TextIO:
    """Standard output without the escaping (for a document written to ``-``: HTML, JSON)."""
    return getattr(sys.stdout, "unescaped", sys.stdout)  # type: ignore[no-any-return]


def _os_error_line(exc: OSError) -> str:
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {describe_os_error(exc)}" if names else describe_os_error(exc)
