"""`make bench`: run every benchmark in bench/, print one table, write bench/results.json.

Each bench module exposes ``main() -> dict`` of figures (nested dicts allowed; a ``conditions`` string says how a
figure was measured). Figures are printed, never asserted: machines are shared and noisy.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

ORDER = ["pipeline", "simulator", "drivers", "models", "dashboard", "remote"]


def flatten(prefix: str, obj, out: list[tuple[str, object]]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "conditions":
                out.append((prefix + "  (conditions)", v))
            else:
                flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out.append((prefix, obj))


def main() -> int:
    names = [n for n in ORDER if (HERE / f"{n}.py").exists()]
    names += sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ORDER and p.stem not in ("run_all", "__init__"))
    results: dict = {"generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for name in names:
        print(f"== bench/{name}.py", flush=True)
        t0 = time.monotonic()
        try:
            results[name] = importlib.import_module(f"bench.{name}").main()
        except Exception:  # noqa: BLE001 - one broken bench must not hide the others' figures
            results[name] = {"error": traceback.format_exc()[-2000:]}
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    rows: list[tuple[str, object]] = []
    flatten("", results, rows)
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:{width}s}  {v}")
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {HERE / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
