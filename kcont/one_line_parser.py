"""The argument parser every kcont command line uses.

argparse's own ``error()`` prints the whole usage block and then the
message; a kernel developer scripting these tools wants what coreutils
gives: one line on stderr naming the program and what was wrong, and exit
status 2.  Standard library only: ``kcont-vm setup`` imports it before the
venv exists.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_USAGE = 2


class _SubcommandAction(argparse._SubParsersAction):  # type: ignore[type-arg]
    """The subcommand action, reporting an option the subcommand does not
    know as the subcommand's own error.

    argparse parses a subcommand with ``parse_known_args`` and leaves what
    it did not know to the top parser, whose message then points at the
    wrong ``--help`` (``kcont: unrecognized arguments: --x (see kcont
    --help)`` for ``kcont run --x``).
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        extras = getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, None)
        if extras and isinstance(values, list) and values:
            subparser = self._name_parser_map[values[0]]
            subparser.error(f"unrecognized arguments: {' '.join(extras)}")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit 2.

    Subparsers made with ``add_subparsers(parser_class=OneLineParser)``
    (the default here) report the same way, prefixed with their full
    program name (``kcont run: ...``), unknown options included.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _SubcommandAction)

    def add_subparsers(self, **kwargs: Any) -> argparse._SubParsersAction[Any]:
        kwargs.setdefault("parser_class", type(self))
        subparsers: argparse._SubParsersAction[Any] = super().add_subparsers(**kwargs)
        return subparsers

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {one_line(message)} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def one_line(text: str) -> str:
    """``text`` with every character that is not printable (newline,
    escape, a surrogate from an undecodable argv byte) shown as a Python
    escape: argparse quotes the user's argument in its messages, and an
    argument must not add a line or drive the terminal."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
