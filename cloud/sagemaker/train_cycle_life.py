#!/usr/bin/env python3
"""SageMaker script-mode entry point: train the early cycle-life model (and score the held-out split).

The train channel holds a Severson-layout folder (``<split>/cell<k>.csv`` and
``cycle_lives/<split>_cycle_lives.csv``, i.e. ``severson2019/qdlin_cycles2to100`` as shipped). Hyperparameters:
``--train-split`` (train), ``--test-split`` (test1; skipped if absent or empty), ``--exclude-file``
(cell22.csv), ``--seed``, ``--name``. The cross-validation that chooses the model is grouped by charging policy
when Severson's ``severson_et_al_SI_table9.csv`` is in the channel or beside it. Local run:

    python cloud/sagemaker/train_cycle_life.py --train ../shared/data/severson2019/qdlin_cycles2to100 --model-dir out
"""

from __future__ import annotations

import sys

import _env


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from cloud.datasets.severson import known_policies, split_paths
    from cloud.train import train_cycle_life

    p = _env.parser("Train the cycle-life model (SageMaker script mode or local).")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test1", help="'' to skip the held-out evaluation")
    p.add_argument("--exclude-file", default="cell22.csv", help="comma-separated test files to leave out")
    p.add_argument("--name", default="cycle_life")
    args = p.parse_args(argv)
    if args.train is None:
        p.error("no training data: set SM_CHANNEL_TRAIN or pass --train")
    tr_dir, tr_lives = split_paths(args.train, args.train_split)
    te_dir = te_lives = None
    if args.test_split:
        d, lives = split_paths(args.train, args.test_split)
        if d.is_dir() and lives.is_file():
            te_dir, te_lives = d, lives
    exclude = tuple(x for x in args.exclude_file.split(",") if x) if te_dir else ()
    groups = known_policies(tr_dir, np.loadtxt(tr_lives, ndmin=1))  # CV grouped by charging policy if known
    meta = train_cycle_life(
        tr_dir,
        tr_lives,
        args.model_dir,
        args.name,
        args.seed,
        te_dir,
        te_lives,
        exclude,
        args.output_data_dir,
        groups=groups,
    )
    _env.print_metrics("", meta["metrics"])
    print(f"model {meta['version']} written to {args.model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
