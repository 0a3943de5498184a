"""``battery-twin model ...``: train, evaluate, build the agent's default models, build datasets, inspect.

Registered through the ``battery_twin.commands`` entry point (``model = "cloud.cli:register"``). Importing this
module needs only argparse; the training stack (scikit-learn, skl2onnx, matplotlib) loads when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cloud.publish import register_publish

EXIT_USAGE = 2
TRAIN_EXTRA_HINT = "pip install 'battery-twin[train]'"


def _needs_train(fn):
    """Commands import the training stack when they run: a missing package is a clear message, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except ImportError as exc:
            print(
                f"battery-twin model: needs a package that is not installed ({exc.name or exc}); install the "
                f"training extra: {TRAIN_EXTRA_HINT}",
                file=sys.stderr,
            )
            return EXIT_USAGE

    run.__doc__ = fn.__doc__
    return run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="train, evaluate and export the twin's models (needs the [train] extra)")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION")
    msub.required = True

    # ---- train
    t = msub.add_parser("train", help="train a model and export ONNX + metadata (+ evaluation JSON/PNG)")
    tsub = t.add_subparsers(dest="family", metavar="FAMILY")
    tsub.required = True
    tc = tsub.add_parser("cycle-life", help="early cycle-life model on a Severson-layout training split")
    tc.add_argument("--train-dir", type=Path, help="folder of cell<k>.csv (default: shared severson train split)")
    tc.add_argument("--train-lives", type=Path, help="cycle lives of the training cells, one per line")
    tc.add_argument("--test-dir", type=Path, help="held-out folder to evaluate in the same run (optional)")
    tc.add_argument("--test-lives", type=Path)
    tc.add_argument("--exclude-file", action="append", default=[], help="test file to leave out (repeatable)")
    tc.add_argument(
        "--groups",
        type=Path,
        help="charging policy (any group label) of each training cell, one per line (line k = cell<k>): cells of a "
        "group stay together in the cross-validation that chooses the model (default: the policies of Severson's "
        "SI table 9 for the shipped splits, else every cell its own group)",
    )
    tc.add_argument("--out", type=Path, required=True, help="output folder for <name>.onnx and <name>.json")
    tc.add_argument("--name", default="cycle_life")
    tc.add_argument("--seed", type=int, default=0)
    tc.set_defaults(func=_needs_train(cmd_train_cycle_life))
    ts = tsub.add_parser("soh", help="SOH forecaster on a capacity CSV (cell,cycle,capacity_ah[,temperature_c])")
    src = ts.add_mutually_exclusive_group(required=True)
    src.add_argument("--capacity-csv", type=Path)
    src.add_argument("--nasa-dir", type=Path, help="NASA PCoE capacity_per_cycle folder")
    ts.add_argument(
        "--nominal-ah", type=float, help="nominal capacity of the cells (Ah); required with --capacity-csv (NASA: 2.0)"
    )
    ts.add_argument(
        "--coarse",
        action="store_true",
        help="the cheaper grid of the shipped default (21 shifts x 9 rates), for a model run on every cell of a rig",
    )
    ts.add_argument("--eol-fraction", type=float, default=0.8)
    ts.add_argument("--from-fraction", type=float, default=0.5)
    ts.add_argument(
        "--out",
        type=Path,
        default=Path("models"),
        help="output folder for <name>.refs and <name>.json (default: ./models)",
    )
    ts.add_argument("--name", default="soh")
    ts.add_argument("--seed", type=int, default=0)
    ts.set_defaults(func=_needs_train(cmd_train_soh))

    # ---- evaluate
    e = msub.add_parser("evaluate", help="score a model; the baseline is refit and scored in the same run")
    esub = e.add_subparsers(dest="family", metavar="FAMILY")
    esub.required = True
    ec = esub.add_parser("cycle-life", help="evaluate on a folder of cell<k>.csv Qdlin matrices")
    ec.add_argument("--qdlin-dir", type=Path, required=True)
    ec.add_argument("--lives", type=Path, required=True, help="cycle lives, one per line (line k = cell<k>)")
    ec.add_argument("--exclude-file", action="append", default=[], help="e.g. cell22.csv (repeatable)")
    ec.add_argument("--model", type=Path, help="ONNX model (default: the agent's shipped cycle_life.onnx)")
    ec.add_argument("--train-dir", type=Path, help="training split for the baseline refit (default: shared data)")
    ec.add_argument("--train-lives", type=Path)
    ec.add_argument("--json", action="store_true", help="print one JSON object")
    ec.add_argument("--out-dir", type=Path, help="write <out-dir>/cycle_life_evaluation.{json,png}")
    ec.set_defaults(func=_needs_train(cmd_eval_cycle_life))
    es = esub.add_parser("soh", help="forecast each cell from a fraction of its history")
    es.add_argument("--capacity-csv", type=Path, required=True)
    es.add_argument("--nominal-ah", type=float, required=True)
    es.add_argument("--eol-fraction", type=float, default=0.8)
    es.add_argument("--from-fraction", type=float, default=0.5)
    es.add_argument("--model", type=Path, help="a fixed model (.refs) for every cell (default: leave-one-cell-out)")
    es.add_argument(
        "--subsets",
        type=int,
        help="the few-sister check: leave-one-cell-out inside random subsets of this many cells (see --repeats)",
    )
    es.add_argument("--repeats", type=int, default=50, help="random subsets drawn with --subsets")
    es.add_argument("--seed", type=int, default=0, help="seed of the subset draw")
    es.add_argument("--json", action="store_true")
    es.add_argument("--out-dir", type=Path, help="write <out-dir>/soh_evaluation.{json,png}")
    es.set_defaults(func=_needs_train(cmd_eval_soh))

    # ---- defaults, datasets, info
    b = msub.add_parser("build-defaults", help="rebuild the models shipped in agent/models (fixed seeds)")
    b.add_argument("--out", type=Path, help="default: the agent's models folder")
    b.add_argument("--report-dir", type=Path, help="evaluation JSON/PNG (default: cloud/reports)")
    b.add_argument("--data-dir", type=Path, help="shared data folder (default: $BATTERY_TWIN_DATA or ../shared/data)")
    b.set_defaults(func=_needs_train(cmd_build_defaults))
    d = msub.add_parser("dataset", help="build a capacity CSV (cell,cycle,capacity_ah,temperature_c)")
    d.add_argument("source", choices=["nasa", "store", "simulated"])
    d.add_argument("--nasa-dir", type=Path, help="NASA capacity_per_cycle folder (default: shared data)")
    d.add_argument("--db", type=Path, help="the agent's SQLite store (for 'store')")
    d.add_argument("--sim-dir", type=Path, help="a `battery-twin simulate` output folder (for 'simulated')")
    d.add_argument(
        "--qdlin-out",
        type=Path,
        help="also write the Severson Qdlin layout of the simulated cells "
        "(those with Qd(V) of cycles 2..100 and a cycle life) under this folder",
    )
    d.add_argument("--out", type=Path, required=True)
    d.set_defaults(func=_needs_train(cmd_dataset))
    register_publish(msub)  # publish: sign, upload, roll out through IoT Jobs (cloud/publish.py, [cloud] extra)
    i = msub.add_parser("info", help="print a model's metadata")
    i.add_argument("model", type=Path)
    i.set_defaults(func=_needs_train(cmd_info))


def _err(msg: str) -> int:
    print(f"battery-twin model: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _severson_defaults(args: argparse.Namespace) -> tuple[Path, Path]:
    from cloud.datasets.severson import severson_root, split_paths

    d, lives = split_paths(severson_root(), "train")
    return args.train_dir or d, args.train_lives or lives


def cmd_train_cycle_life(args: argparse.Namespace) -> int:
    import numpy as np

    from cloud.datasets.severson import known_policies, read_groups
    from cloud.train import train_cycle_life

    train_dir, train_lives = _severson_defaults(args)
    try:
        lives = np.loadtxt(train_lives, ndmin=1)
        groups = read_groups(args.groups, lives.size) if args.groups else known_policies(train_dir, lives)
        meta = train_cycle_life(
            train_dir,
            train_lives,
            args.out,
            args.name,
            args.seed,
            args.test_dir,
            args.test_lives,
            tuple(args.exclude_file),
            groups=groups,
        )
    except (FileNotFoundError, ValueError, OSError) as exc:
        return _err(str(exc))
    print(
        json.dumps(
            {
                "version": meta["version"],
                "metrics": meta["metrics"],
                "files": [str(args.out / f"{args.name}.onnx"), str(args.out / f"{args.name}.json")],
            },
            indent=2,
        )
    )
    return 0


def _histories(args: argparse.Namespace):
    from cloud.datasets.capacity import from_nasa, read_capacity_csv

    if getattr(args, "capacity_csv", None):
        return read_capacity_csv(args.capacity_csv), [args.capacity_csv]
    cells = from_nasa(args.nasa_dir)
    return cells, [Path(c.meta["source"]) for c in cells]


def cmd_train_soh(args: argparse.Namespace) -> int:
    from cloud.train import train_soh

    nominal = args.nominal_ah if args.nominal_ah is not None else (2.0 if args.nasa_dir else None)
    if nominal is None or not nominal > 0:
        return _err("train soh needs --nominal-ah (the cells' nominal capacity in Ah, > 0)")
    try:
        histories, files = _histories(args)
        meta = train_soh(
            histories,
            args.out,
            args.name,
            args.seed,
            files,
            nominal,
            args.eol_fraction,
            args.from_fraction,
            coarse=args.coarse,
        )
    except (FileNotFoundError, ValueError) as exc:
        return _err(str(exc))
    print(
        json.dumps(
            {
                "version": meta["version"],
                "files": [str(args.out / f"{args.name}.refs"), str(args.out / f"{args.name}.json")],
                "hyperparameters": meta["hyperparameters"],
                "metrics": meta["metrics"],
            },
            indent=2,
        )
    )
    return 0


def cmd_eval_cycle_life(args: argparse.Namespace) -> int:
    from cloud import evaluate, plots
    from cloud.datasets.severson import load_qdlin

    train_dir, train_lives = _severson_defaults(args)
    try:
        test = load_qdlin(args.qdlin_dir, args.lives, tuple(args.exclude_file))
        train = load_qdlin(train_dir, train_lives)
        report = evaluate.evaluate_cycle_life(args.model, test, train)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        return _err(str(exc))
    report["excluded_files"] = list(args.exclude_file)
    _emit(report, args, "cycle_life_evaluation", plots.cycle_life)
    return 0


def cmd_eval_soh(args: argparse.Namespace) -> int:
    from cloud import evaluate, plots
    from cloud.datasets.capacity import read_capacity_csv

    try:
        cells = read_capacity_csv(args.capacity_csv)
        if args.subsets:
            from cloud.soh_subsets import evaluate_subsets

            if args.model:
                return _err("--subsets runs leave-one-cell-out inside each subset: it takes no --model")
            report = evaluate_subsets(
                cells, args.nominal_ah, args.eol_fraction, args.from_fraction, args.subsets, args.repeats, args.seed
            )
            print(
                json.dumps(report)
                if args.json
                else json.dumps({k: v for k, v in report.items() if k != "forecasts"}, indent=2)
            )
            return 0
        report = evaluate.evaluate_soh(cells, args.nominal_ah, args.eol_fraction, args.from_fraction, args.model)
    except (FileNotFoundError, ValueError) as exc:
        return _err(str(exc))
    _emit(report, args, "soh_evaluation", plots.soh)
    return 0


def _emit(report: dict, args: argparse.Namespace, stem: str, plotter) -> None:
    from cloud import evaluate

    summary = evaluate.strip_series(report)
    if args.out_dir:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
        plotter(report, args.out_dir / f"{stem}.png")
    if args.json:
        print(json.dumps(summary))
    else:
        _print_table(summary)


def _print_table(r: dict) -> None:
    if r["task"] == "cycle-life":
        print(
            f"cycle life, {r['n_cells']} cells: model RMSE {r['rmse_cycles']:.1f} cycles, MAPE {r['mape_pct']:.1f}% "
            f"| variance baseline RMSE {r['baseline']['rmse_cycles']:.1f}, MAPE {r['baseline']['mape_pct']:.1f}%"
        )
        if "interval" in r:
            i = r["interval"]
            print(
                f"interval {i['quantiles']}: covers {i['coverage']:.0%} of the cells (nominal {i['nominal_coverage']:.0%})"
            )
        if r.get("scored_split_in_training"):
            print("note: the model was fitted on these cells, so these are not held-out figures")
        return
    print(f"SOH forecast ({r['mode']}, from {r['from_fraction']:.0%}, EOL {r['eol_capacity_ah']:.3f} Ah)")
    print(
        f"{'cell':10s} {'rmse_mAh':>9s} {'base_mAh':>9s} {'ratio':>6s} {'band%':>6s} {'eol_pred':>9s} "
        f"{'eol_10-90%':>13s} {'eol_act':>8s}"
    )
    f = lambda v, spec: format(v, spec) if v is not None else "-"
    for c in r["cells"]:
        band = f"{f(c['eol_cycle_lower'], '.0f')}-{f(c['eol_cycle_upper'], '.0f')}"
        print(
            f"{c['cell']:10s} {c['rmse_ah'] * 1e3:9.1f} {c['baseline_rmse_ah'] * 1e3:9.1f} "
            f"{f(c['ratio_to_baseline'], '6.2f')} {c['interval_coverage'] * 100:6.0f} "
            f"{f(c['eol_cycle_predicted'], '9.1f')} {band:>13s} {f(c['eol_cycle_actual'], '8.1f')}"
        )
    print(
        f"overall RMSE {r['rmse_ah'] * 1e3:.1f} mAh, baseline {r['baseline_rmse_ah'] * 1e3:.1f} mAh; per-cell ratio "
        f"median {f(r['ratio_to_baseline_median'], '.3f')}, max {f(r['ratio_to_baseline_max'], '.3f')}; EOL error "
        f"median {f(r['eol_abs_error_median_cycles'], '.1f')} cycles; 10-90 % band covers "
        f"{f(r['interval_coverage'] and r['interval_coverage'] * 100, '.0f')} % of the points; "
        f"{r['data_cleaning']['outliers']} outliers dropped, {r['data_cleaning']['repeats_combined']} repeats combined"
    )


def cmd_build_defaults(args: argparse.Namespace) -> int:
    from cloud.build_defaults import build

    try:
        metas = build(args.out, args.report_dir, args.data_dir)
    except (FileNotFoundError, ValueError) as exc:
        return _err(str(exc))
    print(json.dumps({m["name"]: {"version": m["version"], "metrics": m["metrics"]} for m in metas}, indent=2))
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from cloud.datasets.capacity import from_nasa, from_store, write_capacity_csv
    from cloud.datasets.severson import default_data_dir

    extra: dict = {}
    if args.source == "nasa":
        cells = from_nasa(args.nasa_dir or default_data_dir() / "nasa_pcoe" / "capacity_per_cycle")
    elif args.source == "simulated":
        from cloud.datasets import simulated

        if not args.sim_dir:
            return _err("dataset simulated needs --sim-dir (the output folder of `battery-twin simulate`)")
        try:
            cells = simulated.capacity_histories(args.sim_dir)
            if args.qdlin_out:
                folder, lives, ids = simulated.write_qdlin(args.sim_dir, args.qdlin_out)
                extra = {"qdlin_dir": str(folder), "lives": str(lives), "qdlin_cells": ids}
        except (FileNotFoundError, ValueError, KeyError) as exc:
            return _err(str(exc))
    else:
        if not args.db:
            return _err("dataset store needs --db (the agent's SQLite store)")
        cells = from_store(args.db)
    write_capacity_csv(args.out, cells)
    print(json.dumps({"out": str(args.out), "cells": {c.cell: len(c) for c in cells}, **extra}))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from agent.inference import ModelError, OnnxModel

    try:
        m = OnnxModel(args.model)
    except ModelError as exc:
        return _err(str(exc))
    print(
        json.dumps(
            {
                k: m.meta[k]
                for k in ("name", "family", "version", "features", "hyperparameters", "training_data", "metrics")
                if k in m.meta
            },
            indent=2,
        )
    )
    return 0
