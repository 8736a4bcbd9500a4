"""``ofabench <command>``: parse arguments, call one library function, print the result.

Subcommands live in :mod:`ofabench.commands` (one module per topic, each with a ``register``
function). Any :class:`OfabenchError` becomes a one-line message on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from . import __version__, commands
from .errors import OfabenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ofabench", description="Hardware-aware NAS benchmarking on Once-for-All supernets."
    )
    parser.add_argument("--version", action="version", version=f"ofabench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        _resolve_shipped(args)
        args.func(args)
    except OfabenchError as exc:
        return _fail(str(exc))
    except OSError as exc:  # a file-system error no check foresaw: still one line, exit 1
        return _fail(_os_error_text(exc))
    except KeyboardInterrupt:
        print("ofabench: interrupted", file=sys.stderr)
        return 130
    return 0


MAX_MESSAGE = 2000
SHIPPED_ARGS = {"checkpoint": "supernet", "predictor": "predictor"}


def _resolve_shipped(args: argparse.Namespace) -> None:
    """``--checkpoint NAME`` / ``--predictor NAME`` of a shipped model become its files."""
    from .pretrained import resolve

    for attr, kind in SHIPPED_ARGS.items():
        value = getattr(args, attr, None)
        if isinstance(value, str):
            setattr(args, attr, str(resolve(value, kind)))



def _fail(message: str) -> int:
    """Print ``ofabench: error: <message>`` as one line on stderr; exit code 1."""
    text = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    print(f"ofabench: error: {text}", file=sys.stderr)
    return 1


def _os_error_text(exc: OSError) -> str:
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


if __name__ == "__main__":
    sys.exit(main())
