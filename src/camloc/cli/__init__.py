"""`camloc` command line: one module per subcommand, each with `add_parser(subparsers)` and `run(args) -> int`.

Subcommands parse and print only; the work is done by the library, the one path every command goes through.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Subcommand name -> module under camloc.cli. Add a line here to add a command.
COMMANDS: dict[str, str] = {
    "explain": "camloc.cli.explain",
    "evaluate": "camloc.cli.evaluate",
    "train": "camloc.cli.train",
    "bench": "camloc.cli.bench",
    "probe": "camloc.cli.probe",
    "export": "camloc.cli.export",
    "serve": "camloc.cli.serve",
}


def build_parser() -> argparse.ArgumentParser:
    """The `camloc` parser: --version and one subcommand per module of `COMMANDS` (each sets `run`)."""
    parser = argparse.ArgumentParser(
        prog="camloc", description="Class activation maps and weakly-supervised localization for PyTorch classifiers."
    )
    from camloc import __version__

    parser.add_argument("--version", action="version", version=f"camloc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(sub)
    return parser


class _StderrHandler(logging.Handler):
    """Library log records as 'camloc: message' lines on the current sys.stderr (looked up at each record)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"camloc: {self.format(record)}\n")


def setup_logging(quiet: bool = False) -> None:
    """Show the library's warnings (and, unless quiet, its progress notes) on stderr, once per process."""
    log = logging.getLogger("camloc")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        log.addHandler(_StderrHandler())
        log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """The `camloc` command: parse, run the subcommand, and turn an `InputError` into one line on stderr and
    exit status 2. Returns the exit status."""
    from camloc.errors import InputError

    args_in = sys.argv[1:] if argv is None else argv
    if args_in in (["--version"], ["-V"]):  # answered before the subcommands (and torch) are imported
        from camloc import __version__

        print(f"camloc {__version__}")
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(quiet=bool(getattr(args, "quiet", False)))
    try:
        return int(args.run(args) or 0)
    except InputError as exc:
        print(f"camloc: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `camloc explain ... --format jsonl | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("camloc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
