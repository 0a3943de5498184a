"""What a platform runs, as one JSON document on stdout: its machine, its installed distributions, and the outputs
of the agent's two shipped ONNX models on fixed inputs.

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

from agent.inference.runtime import CycleLifePredictor, SohForecaster


def main() -> None:
    cl = CycleLifePredictor()
    lo = np.array([cl.ranges[n][0] for n in cl.model.feature_names])
    hi = np.array([cl.ranges[n][1] for n in cl.model.feature_names])
    x = lo + (hi - lo) * np.array([[0.25], [0.5], [0.75]])  # three rows across the training range
    soh = SohForecaster()
    xs = np.array([[1.05, -0.0004], [0.92, -0.0011]])  # (level_ah, slope_ah_per_cycle) of two cells
    capacity, eol = soh.forecast(xs, np.array([10.0, 100.0, 500.0]), 0.8)
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
