"""``battery-twin``: one console script; subcommands are plugins found through entry points.

Each package registers its own subcommands in the ``battery_twin.commands`` entry-point group (a function that
takes argparse's subparsers), so the edge agent never imports ``cloud/`` and an edge install without the
``[train]`` extra simply says which extra a command needs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib.metadata import entry_points

from agent import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="battery-twin", description="Digital twin and edge gateway for lithium-ion battery test rigs."
    )
    parser.add_argument("--version", action="version", version=f"battery-twin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for ep in sorted(entry_points(group="battery_twin.commands"), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as exc:
            p = sub.add_parser(ep.name, help=f"(unavailable: {exc.name or exc} is not installed)")
            p.set_defaults(func=_unavailable(ep.name, exc))
            continue
        register(sub)
    return parser


def _unavailable(name: str, exc: ImportError) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(
            f"battery-twin {name}: needs a package that is not installed ({exc}). Install the extra, e.g. "
            "pip install 'battery-twin[train]'",
            file=sys.stderr,
        )
        return 2

    return run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
