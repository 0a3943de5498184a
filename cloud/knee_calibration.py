"""Calibrating the simulator's knee (``simulator/plating.py``) against PyBaMM, and its fleets against Baumhoefer 2014.

    python -m cloud.knee_calibration fit [--write]     # plating constants from the PyBaMM references (~1 h here)
    python -m cloud.knee_calibration anchor [--write]  # cracking rate and N/P spread from Baumhoefer's knees (~5 min)
    python -m cloud.knee_calibration report            # knee_calibration.json + simulated_knee.png (~6 min)

``fit``: the fast model is put in the PyBaMM run's conditions ("matched": its SEI, LAM_NE and LAM_PE laws fitted to the
reference's own trajectories, isothermal, the reference's cycle), then the plating constants are searched (vectorised:
one candidate per simulated cell) to reproduce the reference's capacity and plating-loss trajectories at both charge
rates. ``anchor``: what PyBaMM cannot say (its LAM_NE rate was raised 30-fold to make the knee reachable): the
graphite-cracking rate that puts the fleet's median knee onset at Baumhoefer's, and the N/P spread that gives
Baumhoefer's onset spread. ``--write`` puts the results into ``simulator/params/nmc811.json``. ``report``: the
shipped nmc811 against the references and, cycled by 48 cells, its knee onsets (``simulator.plating.knee_onset``)
against Baumhoefer's; writes ``cloud/reports/knee_calibration.json`` and ``simulated_knee.png``. The references are
made by ``cloud.knee_reference``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from cloud.knee_reference import read_csv
from simulator.chemistry import Chemistry, get_chemistry
from simulator.plating import knee_onset
from simulator.protocol import cccv
from simulator.rig import Rig, RigSpec

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "cloud" / "reports"
REFERENCES = {0.3: REPORTS / "knee_reference_c0.3.csv", 1.0: REPORTS / "knee_reference_c1.csv"}
NMC811_JSON = ROOT / "simulator" / "params" / "nmc811.json"
DATA = Path(os.environ.get("BATTERY_TWIN_DATA", ROOT.parent / "shared" / "data"))  # read-only real data
BAUMHOFER = DATA / "baumhofer2014" / "capacity_checkpoints.csv"
MATCH_ACCEL = 10.0  # the matched runs age 10x faster: one simulated cycle stands for ten of the reference's


# ---- knees --------------------------------------------------------------------------------------------------------
def baumhofer(path: Path = BAUMHOFER) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """cell -> (cycles, capacity_ah), sorted, NaN checkpoints dropped, repeated checkpoints kept."""
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if np.isfinite(float(r["capacity_ah"])):
                by[r["cell"]].append((float(r["cycle"]), float(r["capacity_ah"])))
    return {k: (np.array(sorted(v))[:, 0], np.array(sorted(v))[:, 1]) for k, v in by.items()}


def spread(onsets: np.ndarray) -> dict[str, float]:
    o = onsets[np.isfinite(onsets)]
    med = float(np.median(o))
    p10, p90 = np.percentile(o, [10, 90])
    return {
        "n": int(o.size),
        "median": med,
        "p10": float(p10),
        "p90": float(p90),
        "cv": float(np.std(o) / np.mean(o)),
        "p10_over_median": float(p10 / med),
        "p90_over_median": float(p90 / med),
    }


# ---- matched runs (the fast model in the reference's conditions) -------------------------------------------------
def matched_mechanisms(ref: dict[str, np.ndarray]) -> tuple[list[dict[str, Any]], np.ndarray]:
    """SEI (power law in EFC), LAM_NE and LAM_PE (linear in EFC) fitted to the reference's own trajectories, in the
    simulator's units (fractions of the fresh capacity / electrode); returns them and the reference's EFC."""
    cap0 = ref["capacity_ah"][0]
    efc = np.cumsum(ref["cycled_ah"]) / cap0
    sei = np.maximum(ref["lli_sei_ah"] / cap0, 1e-9)
    p, logk = np.polyfit(np.log(efc), np.log(sei), 1)
    ne = float(np.sum(efc * ref["lam_ne"]) / np.sum(efc * efc))
    pe = float(np.sum(efc * ref["lam_pe"]) / np.sum(efc * efc))
    mech = [
        {"name": "sei", "form": "power_efc", "k": float(np.exp(logk)), "p": float(p), "modes": {"lli": 1.0}},
        {"name": "cracking", "form": "power_efc", "k": ne, "p": 1.0, "modes": {"lam_ne": 1.0}},
        {"name": "lam_pe", "form": "power_efc", "k": pe, "p": 1.0, "modes": {"lam_pe": 1.0}},
    ]
    return mech, efc


def matched_chemistry(ref: dict[str, np.ndarray], plating: dict[str, Any]) -> Chemistry:
    base = get_chemistry("nmc811")
    mech, _ = matched_mechanisms(ref)
    ageing = {"mechanisms": mech, "plating": plating, "lam_lithiated": {"lam_ne": 1.0, "lam_pe": 1.0}}
    return dataclasses.replace(base, ageing=ageing)  # PyBaMM's LAM takes its lithium with it


def matched_run(
    ref: dict[str, np.ndarray], charge_c: float, plating: dict[str, Any], n: int, dt_s: float = 60.0
) -> dict[str, np.ndarray]:
    """Relative capacity and plating loss per simulated cycle for n candidate plating sets (arrays of length n)."""
    cycles = int(np.ceil(ref["cycle"][-1] / MATCH_ACCEL))
    proto = [
        {"step": "cc", "c_rate": -1.0, "until_v": 2.5},
        {"step": "cc", "c_rate": charge_c, "until_v": 4.2},
        {"step": "cv", "v": 4.2, "until_c": 0.01},
    ]
    rig = Rig(
        RigSpec(
            cells=n,
            chemistry=matched_chemistry(ref, plating),
            protocol=proto,
            cycles=cycles,
            initial_soc=1.0,
            h_w_m2k=1e5,  # isothermal, as the reference
            ageing_acceleration=MATCH_ACCEL,
            variability={"capacity_cv": 0.0, "resistance_cv": 0.0, "ageing_cv": 0.0},
            sensor_noise={},
        )
    )
    loss = np.full((cycles, n), np.nan)
    last = np.zeros(n, dtype=np.int64)

    def snap(r: Rig) -> None:
        new = np.flatnonzero((r.cycle != last) & (r.cycle <= cycles))
        if new.size:
            loss[r.cycle[new] - 1, new] = r.ageing.plating.loss[new]
            last[new] = r.cycle[new]

    fresh_ah = rig.capacity_ah.copy()  # the reference's first cycle is all but fresh: both relative to fresh
    rig.run(cycles * 40_000.0, dt_s, every=snap, until_cycles=cycles)
    cols = rig.log.columns()
    cap = np.full((cycles, n), np.nan)
    keep = cols["cycle"] <= cycles
    cap[cols["cycle"][keep] - 1, cols["cell"][keep]] = cols["capacity_ah"][keep]
    return {"cycle": np.arange(1, cycles + 1) * MATCH_ACCEL, "rel_capacity": cap / fresh_ah, "plating": loss}


_LO = np.array([-8.0, -0.05, np.log10(0.002), 0.0, 0.0, 0.0])
_HI = np.array([-2.0, 0.2, np.log10(0.1), 0.3, 5.0, 3.0])


def _plating(z: np.ndarray) -> dict[str, Any]:
    """Candidate rows (log10 k, onset, log10 width, per C, clog, LAM_NE per loss) as plating arrays."""
    return {
        "k": 10.0 ** z[:, 0],
        "margin_onset": z[:, 1],
        "width": 10.0 ** z[:, 2],
        "margin_per_c": z[:, 3],
        "clog_per_loss": z[:, 4],
        "lam_ne_per_loss": z[:, 5],
    }


def _z_of(p: dict[str, float]) -> np.ndarray:
    return np.array(
        [
            np.log10(max(p["k"], 1e-12)),
            p["margin_onset"],
            np.log10(p["width"]),
            p.get("margin_per_c", 0.0),
            p.get("clog_per_loss", 0.0),
            p.get("lam_ne_per_loss", 0.0),
        ]
    )


def residuals(refs: dict[float, dict[str, np.ndarray]], z: np.ndarray) -> np.ndarray:
    """Relative-capacity and plating-loss differences (rows: candidates) over every reference's cycles."""
    out = []
    for c, ref in refs.items():
        run = matched_run(ref, c, _plating(z), z.shape[0])
        cap0 = ref["capacity_ah"][0]
        rc = np.interp(run["cycle"], ref["cycle"], ref["capacity_ah"] / cap0)
        pl = np.interp(run["cycle"], ref["cycle"], (ref["lli_plating_ah"] - ref["lli_plating_ah"][0]) / cap0)
        out += [run["rel_capacity"] - rc[:, None], run["plating"] - pl[:, None]]
    return np.nan_to_num(np.concatenate(out), nan=1.0).T


def fit(refs: dict[float, dict[str, np.ndarray]], batch: int = 64, seed: int = 0, max_nfev: int = 20) -> dict[str, Any]:
    """A random batch finds the basin (all candidates in one run per reference), then least squares refines it with
    a finite-difference Jacobian whose perturbed candidates also run together."""
    from scipy.optimize import least_squares

    z = _LO + np.random.default_rng(seed).random((batch, _LO.size)) * (_HI - _LO)
    shipped = get_chemistry("nmc811").ageing.get("plating")
    if shipped:  # the constants shipped now are one of the candidates
        z[0] = np.clip(_z_of(shipped), _LO, _HI)
    r = residuals(refs, z)
    z0 = z[int(np.argmin(np.sum(r**2, axis=1)))]
    rms0 = float(np.sqrt(np.mean(residuals(refs, z0[None]) ** 2)))
    print(f"random batch of {batch}: best RMS {rms0:.5f}", file=sys.stderr, flush=True)

    def jac(x: np.ndarray) -> np.ndarray:
        h = np.where(x + 0.01 * (_HI - _LO) <= _HI, 0.01, -0.01) * (_HI - _LO)
        rr = residuals(refs, np.vstack([x, x + np.diag(h)]))
        return ((rr[1:] - rr[0]) / h[:, None]).T

    sol = least_squares(
        lambda x: residuals(refs, x[None])[0], z0, jac=jac, bounds=(_LO, _HI), x_scale=_HI - _LO, max_nfev=max_nfev
    )
    rms = float(np.sqrt(np.mean(sol.fun**2)))
    print(f"least squares: RMS {rms:.5f} after {sol.nfev} evaluations", file=sys.stderr, flush=True)
    return {"plating": {k: float(v[0]) for k, v in _plating(sol.x[None]).items()}, "rms": rms, "rms_random": rms0}


# ---- fleets against Baumhoefer ------------------------------------------------------------------------------------
FLEET_PROTOCOL = cccv()  # the simulator's default cycle (0.5C CC-CV, rest, 1C discharge, rest): the demo rig's


FLEET_ACCEL = 10.0  # fleets age 10x faster: 220 cycles stand for 2,200 equivalent full cycles
FLEET_CYCLES = 220


def fleet_rig(cells: int, seed: int = 0, chemistry: str | Chemistry = "nmc811", **spec: Any) -> Rig:
    """The fleet protocol (``FLEET_PROTOCOL``, 25 degC), stopping a cell at 60 % of nominal capacity."""
    chem = chemistry if isinstance(chemistry, Chemistry) else get_chemistry(chemistry)
    return Rig(
        RigSpec(
            cells=cells,
            chemistry=chem,
            protocol=FLEET_PROTOCOL,
            cycles=FLEET_CYCLES,
            initial_soc=0.0,
            seed=seed,
            ageing_acceleration=FLEET_ACCEL,
            eol_capacity_ah=0.6 * chem.nominal_capacity_ah,
            sensor_noise={},
            **spec,
        )
    )


def run_fleet(rig: Rig, dt_s: float = 60.0) -> dict[str, Any]:
    """Capacity per cycle in equivalent full cycles (cycles x acceleration) and knee onsets, per cell."""
    rig.run(FLEET_CYCLES * 20_000.0, dt_s, until_cycles=FLEET_CYCLES)
    acceleration = rig.spec.ageing_acceleration
    cells = rig.cells.n
    cols = rig.log.columns()
    traj = {}
    for j in range(cells):
        m = cols["cell"] == j
        traj[rig.cell_ids[j]] = (cols["cycle"][m] * acceleration, cols["discharge_ah"][m])
    return {"trajectories": traj, "onsets": np.array([knee_onset(c, q)[0] for c, q in traj.values()])}


def fleet(cells: int = 48, seed: int = 0) -> dict[str, Any]:
    return run_fleet(fleet_rig(cells, seed))


def anchor(target: dict[str, float], sds: tuple[float, ...] = (0.0, 0.01, 0.02, 0.03), per: int = 24) -> dict[str, Any]:
    """The two constants the PyBaMM fit cannot give: the graphite-cracking rate (LAM_NE per EFC) that puts the
    fleet's median knee onset at ``target['median']`` EFC, and the onset spread (N/P) that gives ``target['cv']``.
    Step 1: one cell per candidate rate, no spread; step 2: ``per`` cells per candidate spread at that rate."""
    chem = get_chemistry("nmc811")
    names = [m["name"] for m in chem.ageing["mechanisms"]]
    k0 = chem.ageing["mechanisms"][names.index("cracking")]["k"]
    mult = np.geomspace(0.3, 3.0, 24)
    rig = fleet_rig(mult.size, variability={"ageing_cv": 0.0}, ageing_overrides={"plating": {"margin_sd": 0.0}})
    rig.ageing.mult[names.index("cracking")] = mult
    rate_on = run_fleet(rig)["onsets"]
    ok = np.isfinite(rate_on)  # onset falls as the rate grows: interpolate on the reversed, rising arrays
    k = float(k0 * np.exp(np.interp(np.log(target["median"]), np.log(rate_on[ok][::-1]), np.log(mult[ok][::-1]))))
    rig = fleet_rig(per * len(sds), seed=1, ageing_overrides={"cracking": {"k": k}})
    rig.ageing.plating.offset = np.random.default_rng(2).normal(0.0, 1.0, per * len(sds)) * np.repeat(sds, per)
    on = run_fleet(rig)["onsets"].reshape(len(sds), per)
    cvs = np.array([np.nanstd(o) / np.nanmean(o) for o in on])
    rising = np.all(np.diff(cvs) > 0)
    sd = float(np.interp(target["cv"], cvs, sds) if rising else sds[int(np.argmin(abs(cvs - target["cv"])))])
    return {
        "cracking_k": k,
        "margin_sd": sd,
        "rate_scan": {"k": (k0 * mult).tolist(), "onset_efc": rate_on.tolist()},
        "spread_scan": {"margin_sd": list(sds), "onset_cv": cvs.tolist()},
    }


def compare(sim: dict[str, Any], real: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Knee-onset distributions side by side, absolute (EFC) and relative to each fleet's median."""
    real_k = np.array([knee_onset(c, q) for c, q in real.values()])
    sim_k = np.array([knee_onset(c, q) for c, q in sim["trajectories"].values()])

    def slopes(k: np.ndarray, q0: np.ndarray) -> dict[str, float]:
        ratio = k[:, 2] / k[:, 1]
        return {
            "before_per_1000_efc": float(np.nanmedian(-k[:, 1] / q0 * 1000)),
            "after_per_1000_efc": float(np.nanmedian(-k[:, 2] / q0 * 1000)),
            "after_over_before": float(np.nanmedian(ratio)),
        }

    q0_real = np.array([q[0] for _, q in real.values()])
    q0_sim = np.array([q[0] for _, q in sim["trajectories"].values()])
    return {
        "method": "knee onset = breakpoint of a continuous two-line fit to capacity above 65 % of its first value",
        "baumhofer": {"onset_efc": spread(real_k[:, 0]), "fade_fraction": slopes(real_k, q0_real)},
        "simulated": {"onset_efc": spread(sim_k[:, 0]), "fade_fraction": slopes(sim_k, q0_sim)},
    }


def versus_pybamm(refs: dict[float, dict[str, np.ndarray]]) -> dict[float, dict[str, Any]]:
    """The matched fast model with the shipped plating constants against each reference: capacity error (fraction
    of fresh) and knee onsets (cycles)."""
    plating = dict(get_chemistry("nmc811").ageing["plating"], margin_sd=0.0)
    out = {}
    for c, ref in refs.items():
        run = matched_run(ref, c, {k: np.array([v]) for k, v in plating.items()}, 1)
        got = run["rel_capacity"][:, 0]
        want = np.interp(run["cycle"], ref["cycle"], ref["capacity_ah"] / ref["capacity_ah"][0])
        ok = np.isfinite(got)
        out[c] = {
            "cycle": run["cycle"][ok],
            "rel_capacity": got[ok],
            "capacity_error_max": float(np.max(np.abs(got[ok] - want[ok]))),
            "capacity_error_rms": float(np.sqrt(np.mean((got[ok] - want[ok]) ** 2))),
            "knee_onset_fast": knee_onset(run["cycle"][ok], got[ok])[0],
            "knee_onset_pybamm": knee_onset(ref["cycle"], ref["capacity_ah"])[0],
        }
    return out


def knee_png(
    path: Path,
    sim: dict[str, Any],
    real: dict[str, tuple[np.ndarray, np.ndarray]],
    refs: dict[float, dict[str, np.ndarray]],
    fast: dict[float, dict[str, Any]],
) -> Path:
    """PyBaMM vs the fast mechanism; the simulated fleet (one knee highlighted, its onset marked) beside
    Baumhoefer's cells; the knee-onset spreads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(20, 4.8))
    for j, (c, ref) in enumerate(refs.items()):
        ax[0].plot(
            ref["cycle"], ref["capacity_ah"] / ref["capacity_ah"][0], color=f"C{j}", label=f"PyBaMM DFN, {c}C charge"
        )
        ax[0].plot(fast[c]["cycle"], fast[c]["rel_capacity"], "o", ms=3, color=f"C{j}", label=f"fast mechanism, {c}C")
    ax[0].set(xlabel="cycle", ylabel="capacity / initial", title="calibration: OKane2022 (LAM_NE x30) vs fast")
    ax[0].legend(fontsize=8)
    onsets = sim["onsets"]
    pick = int(np.nanargmin(np.abs(onsets - np.nanmedian(onsets))))
    for j, (c, q) in enumerate(sim["trajectories"].values()):
        ax[1].plot(c, q / q[0], lw=2.0 if j == pick else 0.5, color="C3" if j == pick else "0.6")
    ax[1].axvline(onsets[pick], color="C3", ls=":", label=f"knee onset {onsets[pick]:.0f} EFC")
    ax[1].set(xlabel="equivalent full cycles", ylabel="capacity / initial", title="simulated nmc811 fleet (48 cells)")
    ax[1].legend()
    for c, q in real.values():
        ax[2].plot(c, q / q[0], lw=0.6, marker=".", ms=3)
    ax[2].set(xlabel="equivalent full cycles", ylabel="capacity / initial", title="Baumhoefer 2014 (48 cells)")
    real_on = np.array([knee_onset(c, q)[0] for c, q in real.values()])
    bins = np.linspace(0.5, 1.6, 23)
    ax[3].hist(real_on / np.nanmedian(real_on), bins=bins, alpha=0.6, label="Baumhoefer")
    ax[3].hist(onsets / np.nanmedian(onsets), bins=bins, alpha=0.6, label="simulated")
    ax[3].set(xlabel="knee onset / fleet median", ylabel="cells", title="knee-onset spread")
    ax[3].legend()
    for a in ax[1:3]:
        a.set_ylim(0.0, 1.05)
    fig.suptitle("knees: the simulator's lithium-plating mechanism against PyBaMM and against real cells")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# ---- writing the calibrated constants -----------------------------------------------------------------------------
def write_params(plating: dict[str, float], cracking_k: float | None = None, path: Path = NMC811_JSON) -> None:
    """Put calibrated constants into the chemistry file (4 significant digits; its layout kept: json indent 1)."""
    raw = json.loads(path.read_text())
    raw["ageing"].setdefault("plating", {}).update({k: float(f"{float(v):.4g}") for k, v in plating.items()})
    if cracking_k is not None:
        crack = next(m for m in raw["ageing"]["mechanisms"] if m["name"] == "cracking")
        crack["k"] = float(f"{cracking_k:.4g}")
    path.write_text(json.dumps(raw, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloud.knee_calibration", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="plating constants from the PyBaMM references")
    f.add_argument("--batch", type=int, default=32, help="random candidates before least squares")
    f.add_argument("--max-nfev", type=int, default=15)
    for name, what in (("anchor", "cracking rate and onset spread from Baumhoefer's knees"), ("report", "JSON + PNG")):
        g = sub.add_parser(name, help=what)
        g.add_argument("--baumhofer", type=Path, default=BAUMHOFER)
    for g in (f, sub.choices["anchor"]):
        g.add_argument("--write", action="store_true", help="write the result into simulator/params/nmc811.json")
    sub.choices["report"].add_argument("--out", type=Path, default=REPORTS)
    args = ap.parse_args(argv)
    refs = {c: read_csv(p) for c, p in REFERENCES.items() if p.is_file()}
    if not refs:
        print(f"knee_calibration: no reference CSV ({', '.join(map(str, REFERENCES.values()))})", file=sys.stderr)
        return 2
    if args.cmd == "fit":
        res = fit(refs, args.batch, max_nfev=args.max_nfev)
        if args.write:
            write_params(res["plating"])
    else:
        try:
            real = baumhofer(args.baumhofer)
        except OSError as exc:
            print(f"knee_calibration: {exc}", file=sys.stderr)
            return 2
        target = spread(np.array([knee_onset(c, q)[0] for c, q in real.values()]))
        if args.cmd == "anchor":
            res = anchor(target)
            if args.write:
                write_params({"margin_sd": res["margin_sd"]}, res["cracking_k"])
        else:
            sim = fleet()
            fast = versus_pybamm(refs)
            res = {
                **compare(sim, real),
                "versus_pybamm": {
                    f"{c}C": {k: v for k, v in r.items() if k not in ("cycle", "rel_capacity")} for c, r in fast.items()
                },
            }
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "knee_calibration.json").write_text(json.dumps(res, indent=1) + "\n")
            knee_png(args.out / "simulated_knee.png", sim, real, refs, fast)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
