"""The ``grainseg`` command line: a thin layer over the core library.

Each subcommand lives in its own module of this package and provides
``register(subparsers)``, which adds an ``argparse`` parser whose ``func``
default is the function that runs it (``func(args) -> int`` exit code).

Errors: an :class:`~napari_grainseg.errors.InputError` (bad file, bad image,
bad parameter) prints one line ``grainseg: error: ...`` on stderr and exits 2,
without a traceback. Ctrl-C exits 130. Output piped into a reader that stops early
(``grainseg ... | head``) ends the command quietly with exit 141, as a shell's SIGPIPE would.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from napari_grainseg import __version__
from napari_grainseg.errors import GrainsegError, one_line

#: Subcommand modules, in the order ``grainseg --help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "average-weights",
    "batch",
    "demo",
    "edges",
    "eval",
    "export-onnx",
    "finetune",
    "measure",
    "segment",
    "synth",
    "train",
)


class _Parser(argparse.ArgumentParser):
    """An argument error is one line and a pointer to ``--help``, not the whole usage block."""

    #: Where the options are explained (the top-level parser reports a subcommand's unknown options).
    help_command: str | None = None

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.help_command or self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the ``grainseg`` argument parser with every subcommand registered, or only ``command``.

    Registering a subcommand imports what its options need (the evaluation sets import the
    synthetic generator, for instance); a run of one command registers only that one, which saves
    about 75 ms of start-up per process (a one-off measurement of ``segment``, in docs/benchmarks.md).
    """
    parser = _Parser(prog="grainseg", description="Grain boundaries and grain-size statistics for TEM micrographs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in SUBCOMMANDS if command not in SUBCOMMANDS else (command,):
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").register(sub)
    if command in SUBCOMMANDS:
        parser.help_command = f"grainseg {command}"
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand a command line names: its first word that is not an option (the top-level
    options take no value), or None (``grainseg --help``: every subcommand is listed)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``grainseg`` script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" not in argv:  # before parsing: an option's check may warn (a pixel size in another unit)
        _one_line_warnings()
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as given, for outputs that record how to regenerate them
    if not args.debug:
        _quiet_libraries()
    try:
        code = args.func(args)
    except GrainsegError as exc:
        print(f"grainseg: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("grainseg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except Exception as exc:  # a bug, not bad input: one line unless --debug
        if args.debug:
            raise
        print(
            f"grainseg: internal error: {type(exc).__name__}: {one_line(exc)} "
            "(run with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    return int(code or 0)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not raise a second time."""
    import os

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. captured): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _quiet_libraries() -> None:
    """Keep third-party log chatter (tifffile, OpenCV) off stderr: our errors say it in one line."""
    import logging

    import cv2

    logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def _one_line_warnings() -> None:
    """Show our warnings (calibration ignored, image rescaled...) as one line each, without source code."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        try:
            print(
                f"grainseg: warning: {one_line(message) if isinstance(message, BaseException) else message}",
                file=file or sys.stderr,
            )
        except (OSError, ValueError):  # stderr closed
            pass

    warnings.showwarning = show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
