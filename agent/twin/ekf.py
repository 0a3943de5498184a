"""SOC by an extended Kalman filter on the cell's ECM (R0 + two RC pairs), vectorised over cells.

State per cell x = [soc, v1, v2]; measurement V = OCV(soc) + v1 + v2 + R0*I (current positive = charging).
Coulomb counting drives the prediction; the voltage corrects it. ``step`` advances the cells of one tick (one
sample per cell) and returns the innovation (measured minus predicted voltage), which the anomaly detector
watches: a healthy cell that behaves like its model keeps it near zero.
"""

from __future__ import annotations

import numpy as np

from agent.twin.model import GroupModel

SIGMA_V = 0.005  # V: measurement noise plus model error the filter tolerates
SIGMA_I = 0.01  # A: current sensor error, integrated into SOC uncertainty
Q_SOC_PER_S = 1e-10  # SOC random walk per second (capacity and efficiency errors)
Q_V_PER_S = 1e-8  # V^2/s on the RC voltages
P0 = np.diag([0.05**2, 0.01**2, 0.01**2])


class SocEkf:
    def __init__(self, model: GroupModel):
        n = model.nominal_ah.size
        self.model = model
        self.capacity_ah = model.nominal_ah.copy()  # updated from measured discharge capacity per cycle
        self.x = np.zeros((n, 3))
        self.P = np.tile(P0, (n, 1, 1))
        self.ready = np.zeros(n, dtype=bool)

    @property
    def soc(self) -> np.ndarray:
        return self.x[:, 0]

    def initialise(self, idx: np.ndarray, current_a: np.ndarray, voltage_v: np.ndarray) -> None:
        """Start cells from the voltage: SOC = OCV^-1(V - R0*I), RC voltages zero, wide covariance."""
        ok = np.isfinite(voltage_v) & np.isfinite(current_a)
        idx, i, v = idx[ok], current_a[ok], voltage_v[ok]
        if idx.size == 0:
            return
        r0 = self.model.rc(np.full(idx.size, 0.5), idx)[0]
        self.x[idx, 0] = np.clip(self.model.soc_from_ocv(v - r0 * i), 0.0, 1.0)
        self.x[idx, 1:] = 0.0
        self.P[idx] = P0
        self.ready[idx] = True

    def step(
        self,
        idx: np.ndarray,
        current_a: np.ndarray,
        voltage_v: np.ndarray,
        dt_s: np.ndarray,
        temperature_c: np.ndarray | None = None,
    ) -> np.ndarray:
        """Predict over dt_s and correct with the voltage; returns innovations (NaN where not computed).

        ``self.trust`` is set per cell to whether the model is well-conditioned there (OCV not steep), which the
        anomaly detector uses to ignore residuals where a small SOC error is a large voltage error."""
        out = np.full(idx.size, np.nan)
        self.trust = np.zeros(idx.size, dtype=bool)
        go = self.ready[idx] & np.isfinite(current_a) & np.isfinite(dt_s)
        if not go.any():
            return out
        c, i, dt = idx[go], current_a[go], dt_s[go]
        temp = None if temperature_c is None else temperature_c[go]
        x, P = self.x[c], self.P[c]
        r0, r1, tau1, r2, tau2 = self.model.rc(x[:, 0], c, temp)
        a1, a2 = np.exp(-dt / tau1), np.exp(-dt / tau2)
        cap = self.capacity_ah[c]
        x = np.column_stack(
            [x[:, 0] + i * dt / (3600.0 * cap), a1 * x[:, 1] + r1 * (1 - a1) * i, a2 * x[:, 2] + r2 * (1 - a2) * i]
        )
        f = np.stack([np.ones_like(a1), a1, a2], axis=1)  # diagonal of the state transition
        P = P * f[:, :, None] * f[:, None, :]
        P[:, 0, 0] += (SIGMA_I * dt / (3600.0 * cap)) ** 2 + Q_SOC_PER_S * dt
        P[:, 1, 1] += Q_V_PER_S * dt
        P[:, 2, 2] += Q_V_PER_S * dt
        v = voltage_v[go]
        has_v = np.isfinite(v)
        pred = self.model.ocv(x[:, 0], temp) + x[:, 1] + x[:, 2] + r0 * i
        innov = np.where(has_v, v - pred, 0.0)
        slope = self.model.docv_dsoc(x[:, 0], temp)
        H = np.column_stack([slope, np.ones_like(i), np.ones_like(i)])
        PHt = np.einsum("nij,nj->ni", P, H)
        S = np.einsum("ni,ni->n", H, PHt) + SIGMA_V**2
        K = PHt / S[:, None] * has_v[:, None]
        x = x + K * innov[:, None]
        P = P - K[:, :, None] * PHt[:, None, :]
        P = 0.5 * (P + np.transpose(P, (0, 2, 1)))
        x[:, 0] = np.clip(x[:, 0], 0.0, 1.0)
        self.x[c], self.P[c] = x, P
        out[go] = np.where(has_v, innov, np.nan)
        self.trust[go] = slope <= self.model.steep_v_per_soc
        return out
