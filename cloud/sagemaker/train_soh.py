#!/usr/bin/env python3
"""SageMaker script-mode entry point: train the SOH forecaster on a capacity CSV.

The train channel holds ``cell,cycle,capacity_ah[,temperature_c]`` CSV file(s) (``battery-twin model dataset``
builds them from NASA PCoE files or an agent's store). Hyperparameters: ``--capacity-file`` (default: every
*.csv in the channel), ``--nominal-ah`` (required: the cells' nominal capacity), ``--eol-fraction`` (0.8),
``--from-fraction`` (0.5), ``--seed``, ``--name``.
"""

from __future__ import annotations

import sys

import _env


def main(argv: list[str] | None = None) -> int:
    from cloud.datasets.capacity import read_capacity_csv
    from cloud.train import train_soh

    p = _env.parser("Train the SOH forecaster (SageMaker script mode or local).")
    p.add_argument("--capacity-file", default="", help="file name inside the channel (default: all *.csv)")
    p.add_argument("--nominal-ah", type=float, default=None, help="the cells' nominal capacity (Ah), required")
    p.add_argument("--eol-fraction", type=float, default=0.8)
    p.add_argument("--from-fraction", type=float, default=0.5)
    p.add_argument("--name", default="soh")
    args = p.parse_args(argv)
    if args.train is None:
        p.error("no training data: set SM_CHANNEL_TRAIN or pass --train")
    files = [args.train / args.capacity_file] if args.capacity_file else sorted(args.train.glob("*.csv"))
    if not files:
        p.error(f"no *.csv in {args.train}")
    if args.nominal_ah is None or not args.nominal_ah > 0:
        p.error("--nominal-ah (the cells' nominal capacity in Ah, > 0) is required")
    histories = [h for f in files for h in read_capacity_csv(f)]
    meta = train_soh(
        histories,
        args.model_dir,
        args.name,
        args.seed,
        files,
        args.nominal_ah,
        args.eol_fraction,
        args.from_fraction,
        args.output_data_dir,
    )
    _env.print_metrics("", meta["metrics"])
    print(f"model {meta['version']} written to {args.model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
