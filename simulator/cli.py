"""``battery-twin simulate``: a dataset of N cells x M cycles (readings, per-cycle summaries, Qd(V)) in Parquet
or CSV, with a progress bar and a PNG summary. Registered through the ``battery_twin.commands`` entry point."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate N cells x M cycles and write a dataset (Parquet/CSV + PNG)")
    p.add_argument("--out", "-o", required=True, help="output directory (created)")
    p.add_argument("--cells", type=int, default=8)
    p.add_argument("--cycles", type=int, default=100, help="cycles per cell (cells at end of life stop early)")
    p.add_argument("--chemistry", default="nmc811", help="nmc811 | lfp | lco")
    p.add_argument("--capacity-ah", type=float, default=None, help="nominal capacity (default: the chemistry's)")
    p.add_argument(
        "--protocol",
        default="cccv",
        help="cccv | hppc | severson:<policy> | profile:<csv> | @steps.json (a JSON list of steps)",
    )
    p.add_argument(
        "--policies",
        default=None,
        help="comma-separated Severson policies given to cells in turn, "
        "e.g. '3.6C(80%%)-3.6C,5.4C(40%%)-3.6C' (overrides --protocol)",
    )
    p.add_argument("--faults", default=None, help="@faults.json: a JSON list of fault tables")
    p.add_argument("--dt-s", type=float, default=10.0, help="simulation step (s)")
    p.add_argument("--readings-every-s", type=float, default=60.0, help="reading interval in the dataset; 0: none")
    p.add_argument("--ageing-acceleration", type=float, default=1.0)
    p.add_argument("--ambient-c", type=float, default=25.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eol-fraction",
        type=float,
        default=0.0,
        help="stop a cell when its discharge falls below this fraction of nominal (e.g. 0.8); 0: never",
    )
    p.add_argument(
        "--qv-cycles", default="", help="cycles whose discharge Qd(V) is saved besides cycle 1: 'all' or e.g. 10,100"
    )
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    p.add_argument("--no-png", action="store_true", help="skip the PNG summary")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_simulate)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _load_json_arg(value: str, what: str) -> Any:
    if not value.startswith("@"):
        raise ValueError(f"{what} {value!r}: expected @file.json")
    path = Path(value[1:])
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{what} file {str(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} file {str(path)!r}: not JSON ({exc})") from None


def build_spec(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from simulator.chemistry import get_chemistry
    from simulator.rig import RigSpec

    chem = get_chemistry(args.chemistry)
    protocol: Any = _load_json_arg(args.protocol, "protocol") if args.protocol.startswith("@") else args.protocol
    cell_protocols = None
    if args.policies:
        pols = [p.strip() for p in args.policies.split(",") if p.strip()]
        cell_protocols = [f"severson:{pols[j % len(pols)]}" for j in range(args.cells)]
    faults = _load_json_arg(args.faults, "faults") if args.faults else None
    qv: Any = {1}  # cycle 1 always: the PNG's start-of-life discharge curve
    if args.qv_cycles == "all":
        qv = "all"
    elif args.qv_cycles:
        try:
            qv |= {int(c) for c in args.qv_cycles.split(",")}
        except ValueError:
            raise ValueError(f"--qv-cycles {args.qv_cycles!r}: expected 'all' or integers like 10,100") from None
    if not 0 <= args.eol_fraction < 1:
        raise ValueError(f"--eol-fraction {args.eol_fraction}: must lie in 0..1")
    cap = args.capacity_ah or chem.nominal_capacity_ah
    spec = RigSpec(
        cells=args.cells,
        chemistry=args.chemistry,
        capacity_ah=args.capacity_ah,
        protocol=protocol,
        cell_protocols=cell_protocols,
        cycles=args.cycles,
        ambient_c=args.ambient_c,
        seed=args.seed,
        initial_soc=0.0,
        ageing_acceleration=args.ageing_acceleration,
        faults=faults,
        eol_capacity_ah=args.eol_fraction * cap if args.eol_fraction else None,
        qv_cycles=qv,
    )
    return spec, {
        "chemistry": args.chemistry,
        "capacity_ah": cap,
        "protocol": protocol,
        "policies": args.policies,
        "cells": args.cells,
        "cycles": args.cycles,
        "dt_s": args.dt_s,
        "ambient_c": args.ambient_c,
        "seed": args.seed,
        "ageing_acceleration": args.ageing_acceleration,
        "faults": faults,
        "eol_fraction": args.eol_fraction,
        "readings_every_s": args.readings_every_s,
    }


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulator.faults import FaultError
    from simulator.protocol import ProtocolError

    missing = [
        (mod, why)
        for mod, why, needed in (
            ("pyarrow", "--format parquet (or use --format csv)", args.format == "parquet"),
            ("matplotlib", "the PNG summary (or use --no-png)", not args.no_png),
            ("tqdm", "the progress bar (or use --quiet)", not args.quiet),
        )
        if needed and not _importable(mod)
    ]
    if missing:
        for mod, why in missing:
            print(
                f"battery-twin simulate: {mod} is not installed; it is needed for {why}. Install the extra: "
                "pip install 'battery-twin[train]'",
                file=sys.stderr,
            )
        return EXIT_BAD_INPUT
    try:
        if args.cells < 1 or args.cycles < 1 or not args.dt_s > 0:
            raise ValueError("--cells and --cycles must be >= 1 and --dt-s > 0")
        spec, meta = build_spec(args)
        from simulator.rig import Rig

        Rig(spec)  # refuse bad input before creating anything
    except (ValueError, ProtocolError, FaultError) as exc:
        print(f"battery-twin simulate: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return _run(args, spec, meta)


def _run(args: argparse.Namespace, spec: Any, meta: dict[str, Any]) -> int:
    from simulator.fleet import simulate
    from simulator.output import TableWriter, summary_png, write_qv

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from simulator.rig import Rig

    cell_ids = Rig(spec).cell_ids
    readings = TableWriter(out, "readings", args.format, cell_ids) if args.readings_every_s > 0 else None
    temps: list[np.ndarray] = []

    def sink(chunk: dict[str, np.ndarray]) -> None:
        readings.write(chunk)
        temps.append(chunk["temperature_c"][:: max(1, chunk["temperature_c"].size // 20000)])

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=1000, desc=f"simulating {args.cells} cells x {args.cycles} cycles", unit="‰", file=sys.stderr)

    def progress(frac: float) -> None:
        if bar is not None:
            bar.update(int(frac * 1000) - bar.n)

    t0 = time.monotonic()
    res = simulate(
        spec,
        dt_s=args.dt_s,
        readings_every_s=args.readings_every_s or None,
        on_readings=sink if readings else None,
        progress=progress,
    )
    if bar is not None:
        bar.close()
    if readings is not None:
        readings.close()
    cyc = TableWriter(out, "cycles", args.format, cell_ids)
    cyc.write(res.summaries)
    cyc.close()
    files = [cyc.path] + ([readings.path] if readings else [])
    if res.qv["cell"].size:
        files.append(write_qv(out, args.format, res.qv, cell_ids))
    if not args.no_png:
        files.append(
            summary_png(
                out / "summary.png",
                res.summaries,
                cell_ids,
                _curves(spec, res),
                np.concatenate(temps) if temps else None,
                f"{args.cells} x {res.chemistry} cells, {args.cycles} cycles",
            )
        )
    meta.update(
        {
            "cell_ids": list(cell_ids),
            "simulated_s": res.simulated_s,
            "wall_s": time.monotonic() - t0,
            "cycle_life": res.cycle_life.tolist(),
            "files": [p.name for p in files],
        }
    )
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(
        json.dumps(
            {
                "out": str(out),
                "files": meta["files"],
                "cycles_recorded": int(res.summaries["cycle"].size),
                "readings": readings.rows if readings else 0,
                "simulated_s": round(res.simulated_s),
                "wall_s": round(meta["wall_s"], 1),
            }
        )
    )
    return 0


def _curves(spec: Any, res: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Discharge curve Q(V) of the first cell at cycle 1 and at its last cycle."""
    qv = res.qv
    out = {}
    first = np.flatnonzero((qv["cell"] == 0) & (qv["cycle"] == 1))
    if first.size:
        out["cycle 1"] = (qv["q_ah"][first[0]], qv["grid_v"])
    if "last_cycle" in qv and qv["last_cycle"][0] > 1:
        out[f"cycle {qv['last_cycle'][0]} (last)"] = (qv["last_q_ah"][0], qv["grid_v"])
    return out
