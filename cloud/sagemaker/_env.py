"""SageMaker script-mode conventions shared by the entry points.

SageMaker starts ``python <entry point> --<hyperparameter> <value> ...`` in /opt/ml/code with SM_MODEL_DIR,
SM_CHANNEL_<NAME> and SM_OUTPUT_DATA_DIR set. Locally the same script runs with --model-dir/--train/... or with
those variables set by hand. The repository root is put on sys.path so ``cloud`` and ``agent`` import when the
source dir is the repository (entry point ``cloud/sagemaker/train_*.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--model-dir",
        type=Path,
        default=Path(os.environ.get("SM_MODEL_DIR", "model")),
        help="where the model files go ($SM_MODEL_DIR; SageMaker uploads it to S3)",
    )
    p.add_argument(
        "--train", type=Path, default=_env_path("SM_CHANNEL_TRAIN"), help="training channel ($SM_CHANNEL_TRAIN)"
    )
    p.add_argument(
        "--output-data-dir",
        type=Path,
        default=_env_path("SM_OUTPUT_DATA_DIR"),
        help="evaluation JSON/PNG ($SM_OUTPUT_DATA_DIR; default: the model dir)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p


def _env_path(name: str) -> Path | None:
    v = os.environ.get(name)
    return Path(v) if v else None


def print_metrics(prefix: str, metrics: dict, out=sys.stdout) -> None:
    """``name=value`` lines: what SageMaker metric definitions (regexes over the log) pick up."""
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            print(f"{prefix}{k}={v:.6g}", file=out)
        elif isinstance(v, dict):
            print_metrics(f"{prefix}{k}.", v, out)
    out.flush()


def dump(obj: dict) -> str:
    return json.dumps(obj, indent=2, default=str)
