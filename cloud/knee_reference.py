"""The reference the simulator's knee is calibrated against: PyBaMM's DFN with the OKane2022 parameter set (LG M50,
the cell of ``simulator/params/nmc811.json``), SEI + SEI on cracks + partially reversible lithium plating + stress-
driven LAM, with porosity change from SEI and plating (O'Kane et al. 2022, Phys. Chem. Chem. Phys. 24, 7909).

    python -m cloud.knee_reference --charge-c 0.3 --cycles 500 --out cloud/reports/knee_reference_c0.3.csv  (~1 h)
    python -m cloud.knee_reference --charge-c 1.0 --cycles 500 --out cloud/reports/knee_reference_c1.csv    (~1 h)

OKane2022's stress-driven LAM_NE (an example value, 2.8e-7 /s) removes ~0.0015 % of the graphite per cycle: at that
rate the negative electrode keeps its margin for thousands of cycles and the DFN shows no knee within 1,200 cycles
(measured here: 0.9 % fade after 200). The reference raises it 30-fold (``LAM_NE_FACTOR``), so that the margin is
used up within a few hundred cycles and the run shows what happens then; the fast mechanism is calibrated on the
*state* (plating rate against the margin), which does not depend on how fast the margin was consumed.
The CSV holds one row per cycle (columns ``COLUMNS``); it is rewritten after every block of cycles.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

LAM_NE_FACTOR = 30.0
LAM_NE_KEY = "Negative electrode LAM constant proportional term [s-1]"
OPTIONS = {
    "SEI": "solvent-diffusion limited",
    "SEI porosity change": "true",
    "lithium plating": "partially reversible",
    "lithium plating porosity change": "true",
    "particle mechanics": ("swelling and cracking", "swelling only"),
    "SEI on cracks": "true",
    "loss of active material": "stress-driven",
}
VAR_PTS = {"x_n": 5, "x_s": 5, "x_p": 5, "r_n": 30, "r_p": 30}
V_MIN, V_MAX = 2.5, 4.2
COLUMNS = (
    "cycle",
    "capacity_ah",  # open-circuit capacity between 2.5 and 4.2 V (PyBaMM's eSOH "Capacity [A.h]")
    "cycled_ah",  # half the cycle's throughput (charge + discharge)
    "lli_sei_ah",  # lithium lost to SEI and SEI on cracks
    "lli_plating_ah",  # lithium lost to plating (plated and dead)
    "lam_ne",  # fractions
    "lam_pe",
    "x_100",  # negative electrode stoichiometry at 4.2 V open circuit
    "q_neg_ah",
    "margin",  # (1 - x_100) * Q_neg / fresh Q_neg: the negative electrode's free room at the end of charge
)


def cycle_steps(charge_c: float, discharge_c: float = 1.0) -> tuple[str, ...]:
    return (
        f"Discharge at {discharge_c}C until {V_MIN} V",
        f"Charge at {charge_c}C until {V_MAX} V",
        f"Hold at {V_MAX} V until C/100",
    )


def rows_from_summary(s: Any, q_neg_fresh_ah: float) -> list[dict[str, float]]:
    """One row per cycle from a PyBaMM solution's summary variables."""

    def col(name: str) -> np.ndarray:
        return np.asarray(s[name], dtype=float)

    sei = col("Loss of capacity to negative SEI [A.h]") + col("Loss of capacity to negative SEI on cracks [A.h]")
    x100, qn = col("x_100"), col("Negative electrode capacity [A.h]")
    table = {
        "cycle": np.arange(1, sei.size + 1, dtype=float),
        "capacity_ah": col("Capacity [A.h]"),
        "cycled_ah": col("Change in throughput capacity [A.h]") / 2.0,
        "lli_sei_ah": sei,
        "lli_plating_ah": col("Loss of capacity to negative lithium plating [A.h]"),
        "lam_ne": col("Loss of active material in negative electrode [%]") / 100.0,
        "lam_pe": col("Loss of active material in positive electrode [%]") / 100.0,
        "x_100": x100,
        "q_neg_ah": qn,
        "margin": (1.0 - x100) * qn / q_neg_fresh_ah,
    }
    return [{k: float(table[k][j]) for k in COLUMNS} for j in range(sei.size)]


def write_csv(path: Path, rows: list[dict[str, float]], header: str) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        f.write(header)
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (int(v) if k == "cycle" else f"{v:.6g}") for k, v in r.items()})
    tmp.replace(path)


def read_csv(path: Path) -> dict[str, np.ndarray]:
    """A reference CSV as columns (comment lines starting with # skipped)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    if not rows or set(COLUMNS) - set(rows[0]):
        raise ValueError(f"{path}: expected the columns {', '.join(COLUMNS)}")
    return {k: np.array([float(r[k]) for r in rows]) for k in COLUMNS}


def run(charge_c: float, cycles: int, out: Path, block: int = 25, lam_ne_factor: float = LAM_NE_FACTOR) -> None:
    try:
        import pybamm
    except ImportError as exc:
        raise SystemExit("PyBaMM is needed to remake the references: pip install -e '.[train,reference]'") from exc

    params = pybamm.ParameterValues("OKane2022")
    params.update({LAM_NE_KEY: params[LAM_NE_KEY] * lam_ne_factor})
    model = pybamm.lithium_ion.DFN(dict(OPTIONS))  # PyBaMM fills in the dict it is given
    experiment = pybamm.Experiment([cycle_steps(charge_c)] * block)
    sim = pybamm.Simulation(
        model, parameter_values=params, experiment=experiment, var_pts=VAR_PTS, solver=pybamm.IDAKLUSolver()
    )
    header = (
        f"# PyBaMM {pybamm.__version__} DFN, OKane2022, options {OPTIONS}, {LAM_NE_KEY} x {lam_ne_factor}; "
        f"cycle: {'; '.join(cycle_steps(charge_c))}; 25 degC isothermal\n"
    )
    t0 = time.monotonic()
    state, q_fresh, rows = None, None, []
    for done in range(block, cycles + block, block):
        # each block starts from the last state only: a solution carried whole grows by ~15 MB a cycle
        sol = sim.solve(starting_solution=state)
        s = sol.summary_variables
        skip = 0 if state is None else 1  # a block started from a state counts that state as its first cycle
        if q_fresh is None:
            lam0 = float(np.asarray(s["Loss of active material in negative electrode [%]"])[0]) / 100.0
            q_fresh = float(np.asarray(s["Negative electrode capacity [A.h]"])[0]) / (1.0 - lam0)
        new = rows_from_summary(s, q_fresh)[skip:]
        for r in new:
            r["cycle"] = float(len(rows) + 1)
            rows.append(r)
        state = sol.last_state
        del sol
        write_csv(out, rows, header)
        r = rows[-1]
        print(
            f"{done} cycles, {time.monotonic() - t0:.0f} s: capacity {r['capacity_ah']:.4f} Ah, plating "
            f"{r['lli_plating_ah']:.4f} Ah, margin {r['margin']:.4f}",
            file=sys.stderr,
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloud.knee_reference", description=__doc__.split("\n\n")[0])
    ap.add_argument("--charge-c", type=float, default=0.3)
    ap.add_argument("--cycles", type=int, default=500)
    ap.add_argument("--block", type=int, default=25, help="cycles per solve (the CSV is rewritten after each)")
    ap.add_argument("--lam-ne-factor", type=float, default=LAM_NE_FACTOR)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cycles < 1 or args.block < 1 or not args.charge_c > 0:
        print("knee_reference: --cycles, --block and --charge-c must be positive", file=sys.stderr)
        return 2
    run(args.charge_c, args.cycles, args.out, args.block, args.lam_ne_factor)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
