"""What a platform runs, as one JSON document on stdout: its machine, its installed distributions, and the outputs
of the agent's two shipped models (cycle life in onnxruntime, SOH in numpy) on fixed inputs.

Run by the container and arm64 tests with the interpreter under test (in the image, in the emulated arm64 root) and
with the host's, and compared: the installed packages must be the lock, and the same model must give the same
numbers on every platform. Standalone on purpose (only the installed ``agent`` package): it is copied or piped to
where it runs, and one process does it all (every process start costs seconds under emulation).
"""

from __future__ import annotations

import importlib.metadata
import json
import platform

import numpy as np

from agent.inference import CycleLifePredictor, SohForecaster


def main() -> None:
    cl = CycleLifePredictor()
    lo = np.array([cl.ranges[r.key][0] for r in cl.refs])
    hi = np.array([cl.ranges[r.key][1] for r in cl.refs])
    x = lo + (hi - lo) * np.array([[0.25], [0.5], [0.75]])  # three rows across the training range
    soh = SohForecaster()  # the sister-cell model (.refs): numpy on every platform, compared like the ONNX one
    cycles = np.tile(np.arange(0.0, 400.0, 20.0), (2, 1))
    history = 2.0 - np.array([[0.0006], [0.0012]]) * cycles  # two cells fading at different rates
    fc = soh.forecast(cycles, history, 2.0, np.array([10.0, 100.0, 500.0]), 1.6)
    capacity, eol = np.r_[fc.capacity_ah, fc.lower_ah, fc.upper_ah], np.r_[fc.eol_cycle, fc.eol_lower, fc.eol_upper]
    print(
        json.dumps(
            {
                "machine": platform.machine(),
                "distributions": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()},
                "cycle_life": cl.predict(x).tolist(),
                "soh_capacity_ah": np.asarray(capacity).tolist(),
                "soh_eol_cycles": np.asarray(eol).tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
