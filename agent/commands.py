"""The agent's own subcommands: ``run`` and ``config check``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from agent.config import DEFAULT_CONFIG_TOML, ConfigError, load_config

EXIT_CONFIG = 2


def _config_path(args: argparse.Namespace) -> str | None:
    return args.config or os.environ.get("BATTERY_TWIN_CONFIG") or None


def register_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the agent (default config: simulated rig, uplink off)",
        description="Run the agent. Without a config it runs the embedded default: two simulated drivers (4 NMC811 "
        "and 4 LFP cells) that start with a simulated past, the store under ./var, the dashboard on "
        "http://127.0.0.1:8080/, the uplink off. After start-up it prints the dashboard address, where the data is, "
        "how to reach AWS IoT Core (battery-twin provision) and how to stop (Ctrl-C).",
    )
    p.add_argument(
        "--config",
        "-c",
        help="TOML config file (default: $BATTERY_TWIN_CONFIG or the embedded default, which "
        "`battery-twin config default` prints)",
    )
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.logs import redact
    from agent.runtime import run_agent

    try:
        cfg = load_config(_config_path(args))
    except ConfigError as exc:
        print(redact(str(exc)), file=sys.stderr)  # stderr is the journal under systemd: no key material
        return EXIT_CONFIG
    return run_agent(cfg, config_path=_config_path(args))


def register_config(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="check a config file or print the default one")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    c = csub.add_parser("check", help="validate FILE; print the effective config, or every error (exit 2)")
    c.add_argument("file")
    c.set_defaults(func=cmd_config_check)
    s = csub.add_parser("show", help="print the config FILE runs with (--effective: with the shadow layer, by source)")
    s.add_argument("file")
    s.add_argument(
        "--effective",
        action="store_true",
        help="merge the confirmed shadow layer over FILE and say where each value came from (file, shadow vN, default)",
    )
    s.set_defaults(func=cmd_config_show)
    d = csub.add_parser("default", help="print the embedded default config")
    d.set_defaults(func=lambda a: print(DEFAULT_CONFIG_TOML, end="") or 0)


def cmd_config_check(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        print(f"{len(exc.problems)} problem(s) in {exc.source}:", file=sys.stderr)
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(cfg.model_dump(mode="json", by_alias=True, serialize_as_any=True), indent=2))
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    """One ``key = value  # source`` line per value; secrets are shown as ``**********``."""
    if not args.effective:
        return cmd_config_check(args)
    from agent.remote.layer import provenance

    try:
        _, rows = provenance(args.file)
    except ConfigError as exc:
        print(f"{len(exc.problems)} problem(s) in {exc.source}:", file=sys.stderr)
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    width = max((len(k) for k, _, _ in rows), default=0)
    for key, value, source in rows:
        print(f"{key:<{width}} = {json.dumps(value)}  # {source}")
    return 0
