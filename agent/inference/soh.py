"""SOH forecast from sister-cell trajectories: capacity, its 10-90 % band and the end-of-life cycle, batched over cells.

The model file (``<name>.refs``, JSON written by ``cloud.soh``) carries the reference trajectories of finished cells
(capacity as a fraction of each cell's nominal, smoothed and resampled on a uniform grid of cycles) and the rule's
parameters; its metadata ``<name>.json`` carries the file's SHA-256, which is checked on load, as for ONNX models.

A *member* of the ensemble is one reference j, read from the point tau that the cell's latest cycle is aligned
with, at a rate a relative to the reference: the cell's capacity h cycles after its latest cycle is forecast as

    C(h) / nominal = q_j(tau + a*h) + d

where d is the mean residual of the last few history points (so the forecast starts where the cell is).
tau (a shift: "this cell is where reference j was at tau") runs over a window around the time the reference passed
the cell's current capacity; a runs over a log-spaced grid around the rate that maps the cell's own fade so far onto
the reference, with a log-normal prior on a for sister cells (they age at nearly the same rate). Each member is weighted by how
well it reproduces the cell's history (RMSE r over the condensed history, Gaussian kernel of width
``bandwidth`` x the best member's r) times the prior. Over the ``top_k`` heaviest members, widened by the best fit's
residual noise, the forecast is the weighted median and the band the weighted 10th/90th percentiles (one
distribution, so the forecast always lies inside its band); the end of life is the weighted median (and
percentiles) of the members' own crossing cycles. Cells whose cleaned history has already crossed the threshold get
the observed crossing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from agent.features import soh as F
from agent.inference.runtime import ModelError, read_checked

FORMAT = "battery-twin-soh-refs/1"
TABLE_TAIL = 1.0  # the fitting's table runs on past a reference's end for this fraction of its span
RATE_LIMIT = 50.0  # a cell ages at most this many times faster or slower than a reference
BLOCK_ELEMENTS = 400_000  # bounds the [cells, refs, rates, points, shifts] working arrays of one block
NOISE_NODES = np.array([-np.sqrt(3.0), 0.0, np.sqrt(3.0)])  # 3-point Gauss-Hermite: measurement noise in the band
NOISE_WEIGHTS = np.array([1.0, 4.0, 1.0]) / 6.0


class SohModelError(ModelError):
    """A SOH model file that cannot be used: missing, not matching its metadata, or of an unknown format."""


@dataclass(frozen=True)
class SohForecast:
    """Per cell: capacity [cells, H] with its band, end-of-life cycle with its band (NaN = none / unknown)."""

    origin_cycle: np.ndarray
    capacity_ah: np.ndarray
    lower_ah: np.ndarray
    upper_ah: np.ndarray
    eol_cycle: np.ndarray
    eol_lower: np.ndarray
    eol_upper: np.ndarray
    outliers: np.ndarray


def default_soh_path() -> Path:
    return Path(str(resources.files("agent.models").joinpath("soh.refs")))


def _quantiles(values: np.ndarray, weights: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Weighted quantiles along axis 1, values [N, M, H], weights [N, M] -> [len(qs), N, H]: the weighted empirical
    distribution with each member at the middle of its weight, linearly interpolated between members."""
    order = np.argsort(values, axis=1)
    v = np.take_along_axis(values, order, axis=1)
    w = np.take_along_axis(np.broadcast_to(weights[:, :, None], values.shape), order, axis=1)
    total = np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    mid = (np.cumsum(w, axis=1) - 0.5 * w) / total  # [N, M, H], increasing along M
    m = values.shape[1]
    out = np.empty((len(qs), values.shape[0], values.shape[2]))
    for i, q in enumerate(qs):
        k = np.clip((mid < q).sum(axis=1), 1, m - 1)[:, None, :]  # mid[k-1] < q <= mid[k]
        c0, c1 = np.take_along_axis(mid, k - 1, 1), np.take_along_axis(mid, k, 1)
        v0, v1 = np.take_along_axis(v, k - 1, 1), np.take_along_axis(v, k, 1)
        f = np.clip((q - c0) / np.maximum(c1 - c0, 1e-300), 0.0, 1.0)
        out[i] = (v0 + f * (v1 - v0))[:, 0, :] if m > 1 else v[:, 0, :]
    return out


class SohForecaster:
    """Loads a ``.refs`` model (hash-checked against its metadata) and forecasts batches of capacity histories."""

    def __init__(self, path: str | Path | None = None, meta_path: str | Path | None = None):
        self.path = Path(path) if path else default_soh_path()
        meta_file = Path(meta_path) if meta_path else self.path.with_suffix(".json")
        data, self.meta = read_checked(self.path, meta_file, "model_sha256", SohModelError)
        try:
            model = json.loads(data)
        except json.JSONDecodeError as exc:
            raise SohModelError(f"SOH model {self.path} is not valid JSON: {exc}") from None
        if model.get("format") != FORMAT:
            raise SohModelError(f"{self.path.name}: format {model.get('format')!r}, this agent reads {FORMAT!r}")
        try:
            self._load(model)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SohModelError(f"{self.path.name}: malformed model ({exc!r})") from None

    def _load(self, model: dict[str, Any]) -> None:
        p = model["params"]
        self.max_points = int(p["max_points"])
        self.bandwidth = float(p["bandwidth"])
        self.noise_floor = float(p["noise_floor"])
        self.level_points = int(p["level_points"])
        self.rates = np.asarray(p["rates"], dtype=float)
        self.rate_sigma = float(p["rate_sigma"]) if p.get("rate_sigma") is not None else None
        self.shifts = int(p["shifts"])
        self.window = float(p["shift_window"])  # +- this fraction of each reference's span around the aligned point
        self.top_k = int(p["top_k"])
        self.quantiles = (float(p["lower_quantile"]), float(p["upper_quantile"]))
        refs = model["references"]
        if not refs or self.shifts < 2 or not self.rates.size or np.any(self.rates <= 0):
            raise ValueError("no references, fewer than 2 shifts or no positive rates")
        self.ref_q = np.array([r["q"] for r in refs], dtype=float)  # [J, G] fraction of nominal
        self.ref_t0 = np.array([r["t0"] for r in refs], dtype=float)
        self.ref_dt = np.array([r["dt"] for r in refs], dtype=float)
        self.ref_tail = np.minimum(np.array([r["tail_slope"] for r in refs], dtype=float), 0.0)
        self.ref_cells = [str(r["cell"]) for r in refs]
        self.ref_t1 = self.ref_t0 + self.ref_dt * (self.ref_q.shape[1] - 1)
        # The fitting's table: each reference sampled at its shift spacing h (so the shifts of one member are
        # consecutive table points), S points of constant start before t0, the linear tail after t1, S more after.
        span = np.maximum(self.ref_t1 - self.ref_t0, 1e-9)
        self.step = 2.0 * self.window / (self.shifts - 1) * span  # [J] cycles of reference time per table point
        length = 2 * self.shifts + int(np.ceil((1.0 + TABLE_TAIL) / (2.0 * self.window / (self.shifts - 1)))) + 2
        times = self.ref_t0[:, None] + (np.arange(length) - self.shifts)[None, :] * self.step[:, None]
        self.table = self._ref(np.arange(len(refs))[:, None], times).astype(np.float32)  # [J, L]
        flat = self.table.ravel()
        # rows[i] = flat[i : i + S + 1]: one member's S shifts (and one more point to interpolate) are one row.
        self.rows = np.lib.stride_tricks.as_strided(
            flat,
            shape=(flat.size - self.shifts, self.shifts + 1),
            strides=(flat.strides[0], flat.strides[0]),
            writeable=False,
        )

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unknown"))

    # ---------------------------------------------------------------- reference curves
    def _ref(self, j: np.ndarray, x: np.ndarray) -> np.ndarray:
        """q_j(x) for reference indices ``j`` broadcast against ref times ``x``; linear tail beyond the end."""
        g = self.ref_q.shape[1]
        pos = (x - self.ref_t0[j]) / self.ref_dt[j]
        i0 = np.clip(np.floor(pos), 0, g - 2).astype(np.int64)
        f = np.clip(pos - i0, 0.0, 1.0)
        q0 = self.ref_q[j, i0]
        val = q0 + f * (self.ref_q[j, i0 + 1] - q0)
        beyond = x > self.ref_t1[j]
        val = np.where(beyond, self.ref_q[j, g - 1] + self.ref_tail[j] * (x - self.ref_t1[j]), val)
        return np.asarray(np.maximum(val, 0.0))

    def _crossing(self, j: np.ndarray, tau: np.ndarray, level: np.ndarray) -> np.ndarray:
        """Reference time at which q_j first falls to ``level`` after ``tau`` (inf if never); arrays [N, K]."""
        g = self.ref_q.shape[1]
        grid_t = self.ref_t0[j][..., None] + self.ref_dt[j][..., None] * np.arange(g)
        q = self.ref_q[j]
        after = grid_t >= tau[..., None]
        below = (q <= level[..., None]) & after
        has = below.any(axis=-1)
        i = np.argmax(below, axis=-1)
        ip = np.maximum(i - 1, 0)
        q1 = np.take_along_axis(q, i[..., None], -1)[..., 0]
        q0 = np.take_along_axis(q, ip[..., None], -1)[..., 0]
        t1 = np.take_along_axis(grid_t, i[..., None], -1)[..., 0]
        t0 = np.take_along_axis(grid_t, ip[..., None], -1)[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(q0 > q1, (q0 - level) / (q0 - q1), 1.0)
            at = np.maximum(t0 + np.clip(frac, 0.0, 1.0) * (t1 - t0), tau)
            tail = self.ref_tail[j]
            ext = np.where(
                tail < 0, self.ref_t1[j] + (level - self.ref_q[j, g - 1]) / np.where(tail < 0, tail, -1.0), np.inf
            )
        return np.asarray(np.where(has, at, np.maximum(ext, tau)))

    # ---------------------------------------------------------------- forecast
    def forecast(
        self,
        cycle: np.ndarray,
        capacity_ah: np.ndarray,
        nominal_ah: np.ndarray | float,
        horizons: np.ndarray,
        eol_capacity_ah: np.ndarray | float,
    ) -> SohForecast:
        """Histories [cells, T] (cycle numbers and capacities, NaN = none, any order) -> ``SohForecast``.

        ``horizons``: cycles after each cell's latest cycle. Cells with fewer than 3 usable points get NaN.
        """
        prep = F.prepare(cycle, capacity_ah, self.max_points)
        n = prep.capacity_ah.shape[0]
        nominal = np.broadcast_to(np.asarray(nominal_ah, dtype=float), (n,)).astype(float)
        eol = np.broadcast_to(np.asarray(eol_capacity_ah, dtype=float), (n,)).astype(float)
        h = np.asarray(horizons, dtype=float).reshape(-1)
        out = {k: np.full((n, h.size), np.nan) for k in ("cap", "lo", "hi")}
        eol_out = {k: np.full(n, np.nan) for k in ("mid", "lo", "hi")}
        origin = prep.last_cycle
        ok = (prep.n_points >= F.MIN_POINTS) & (nominal > 0)
        idx = np.nonzero(ok)[0]
        per_cell = self.ref_q.shape[0] * (self.shifts + 1) * self.rates.size * prep.capacity_ah.shape[1]
        block = max(1, BLOCK_ELEMENTS // max(per_cell, 1))
        for start in range(0, idx.size, block):
            rows = idx[start : start + block]
            res = self._forecast_block(
                prep.cycle[rows] - origin[rows, None],
                prep.capacity_ah[rows] / nominal[rows, None],
                h,
                eol[rows] / nominal[rows],
            )
            for k, v in zip(("cap", "lo", "hi"), res[:3]):
                out[k][rows] = v * nominal[rows, None]
            for k, v in zip(("mid", "lo", "hi"), res[3:]):
                eol_out[k][rows] = origin[rows] + v
        self._observed_crossing(prep, eol, ok, eol_out)
        return SohForecast(
            origin,
            out["cap"],
            out["lo"],
            out["hi"],
            eol_out["mid"],
            eol_out["lo"],
            eol_out["hi"],
            prep.outliers,
        )

    def _anchors(self, u: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per cell and reference: the reference time at the cell's current level, and the rate that maps the time the
        cell took from its first level to its current one onto the reference (1 if it has not faded measurably)."""
        nb, nj = q.shape[0], self.ref_q.shape[0]
        valid = np.isfinite(q)
        last = valid & (np.cumsum(valid[:, ::-1], axis=1)[:, ::-1] <= self.level_points)
        first = valid & (np.cumsum(valid, axis=1) <= self.level_points)
        now = np.where(last, q, 0.0).sum(axis=1) / last.sum(axis=1)
        then = np.where(first, q, 0.0).sum(axis=1) / first.sum(axis=1)
        u_then = np.where(first, u, 0.0).sum(axis=1) / first.sum(axis=1)
        jb = np.broadcast_to(np.arange(nj), (nb, nj))
        start = np.broadcast_to(self.ref_t0, (nb, nj))
        centre = np.clip(self._crossing(jb, start, np.broadcast_to(now[:, None], (nb, nj))), self.ref_t0, self.ref_t1)
        before = np.clip(self._crossing(jb, start, np.broadcast_to(then[:, None], (nb, nj))), self.ref_t0, self.ref_t1)
        faded = (then - now > 3.0 * self.noise_floor) & (u_then < 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            a0 = np.where(faded[:, None] & (centre > before), (centre - before) / -u_then[:, None], 1.0)
        return centre, np.clip(a0, 1.0 / RATE_LIMIT, RATE_LIMIT), last

    def _fit(
        self, centre: np.ndarray, rate: np.ndarray, u: np.ndarray, q: np.ndarray, last: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """History RMSE and mean residual of the last points of every member [B, J, A, S].

        The hot path. A member's shifts are consecutive table points, so one gathered row of the table gives a
        history point's value for every shift, interpolated linearly between rows; float32 halves the traffic."""
        nj, length = self.table.shape
        valid = np.isfinite(q)
        f4 = np.float32
        start = (centre - self.ref_t0) / self.step + self.shifts - (self.shifts - 1) / 2.0  # [B, J] first shift
        pos = (
            start[:, :, None, None] + (rate / self.step[:, None])[..., None] * np.where(valid, u, 0.0)[:, None, None, :]
        )
        np.clip(pos, 0.0, length - self.shifts - 1.0, out=pos)  # [B, J, A, P]
        base = np.floor(pos)
        frac = (pos - base).astype(f4)[..., None]
        idx = base.astype(np.intp) + (np.arange(nj) * length)[None, :, None, None]
        win = self.rows[idx]  # [B, J, A, P, S + 1]
        val = win[..., :-1] * (f4(1.0) - frac) + win[..., 1:] * frac
        r = np.where(valid, q, 0.0).astype(f4)[:, None, None, :, None] - val
        r *= valid[:, None, None, :, None]
        rmse = np.sqrt(np.einsum("bjaps,bjaps->bjas", r, r, dtype=np.float64) / valid.sum(axis=1)[:, None, None, None])
        level = (
            np.einsum("bjaps,bp->bjas", r, last.astype(f4), dtype=np.float64) / last.sum(axis=1)[:, None, None, None]
        )
        return rmse, level

    def _log_weight(self, rmse: np.ndarray, rate: np.ndarray) -> np.ndarray:
        """Log weight of members [B, J*A*S]: Gaussian kernel on the history RMSE (width ``bandwidth`` x the best
        member's, floored) plus the log-normal prior on the rate [B, J, A]."""
        nb = rmse.shape[0]
        base = np.maximum(rmse.min(axis=1), self.noise_floor)
        logw = -0.5 * (rmse / (self.bandwidth * base[:, None])) ** 2
        if self.rate_sigma is None:
            return np.asarray(logw)
        prior = -0.5 * (np.log(rate) / self.rate_sigma) ** 2
        return np.asarray(logw + np.repeat(prior.reshape(nb, -1), self.shifts, axis=1))

    def _forecast_block(
        self, u: np.ndarray, q: np.ndarray, h: np.ndarray, eol_frac: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """u: history cycles relative to the origin (<= 0) [B, P], q: capacity / nominal [B, P]."""
        nb = q.shape[0]
        ns, na = self.shifts, self.rates.size
        rows = np.arange(nb)[:, None]
        centre, a0, last = self._anchors(u, q)
        rate = a0[:, :, None] * self.rates  # [B, J, A]
        rmse4, level4 = self._fit(centre, rate, u, q, last)
        rmse, level = rmse4.reshape(nb, -1), level4.reshape(nb, -1)
        logw = self._log_weight(rmse, rate)
        k = min(self.top_k, logw.shape[1])
        top = np.argpartition(-logw, k - 1, axis=1)[:, :k]  # [B, K] member indices
        lw = np.take_along_axis(logw, top, 1)
        w = np.exp(lw - lw.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        mj, rest = np.divmod(top, na * ns)
        ma, ms = np.divmod(rest, ns)
        mtau = centre[rows, mj] + (ms - (ns - 1) / 2.0) * self.step[mj]
        a = rate[rows, mj, ma]
        d = np.take_along_axis(level, top, 1)
        fc = self._ref(mj[..., None], mtau[..., None] + a[..., None] * h[None, None, :]) + d[..., None]  # [B, K, H]
        noise = rmse.min(axis=1)  # the best fit's residual scatter: measurement noise as the history shows it
        spread = fc[:, :, None, :] + noise[:, None, None, None] * NOISE_NODES[None, None, :, None]
        wn = (w[:, :, None] * NOISE_WEIGHTS[None, None, :]).reshape(nb, -1)
        lo, mid, hi = _quantiles(spread.reshape(nb, -1, h.size), wn, (self.quantiles[0], 0.5, self.quantiles[1]))
        ahead = (self._crossing(mj, mtau, eol_frac[:, None] - d) - mtau) / a  # cycles after the origin
        e_lo, e_mid, e_hi = _quantiles(ahead[..., None], w, (self.quantiles[0], 0.5, self.quantiles[1]))[..., 0]
        return mid, lo, hi, e_mid, e_lo, e_hi

    @staticmethod
    def _observed_crossing(prep: F.Prepared, eol_ah: np.ndarray, ok: np.ndarray, out: dict[str, np.ndarray]) -> None:
        """Where the cleaned history already fell to the threshold, the end of life is that crossing, not a forecast."""
        q, c = prep.capacity_ah, prep.cycle
        below = np.isfinite(q) & (q <= eol_ah[:, None]) & ok[:, None]
        rows = np.nonzero(below.any(axis=1))[0]
        if not rows.size:
            return
        k = np.argmax(below[rows], axis=1)
        kp = np.maximum(k - 1, 0)
        c1, q1 = c[rows, k], q[rows, k]
        c0, q0 = c[rows, kp], q[rows, kp]
        interp = (k > 0) & np.isfinite(q0) & (q0 > q1)
        with np.errstate(invalid="ignore", divide="ignore"):
            at = np.where(interp, c0 + (q0 - eol_ah[rows]) / (q0 - q1) * (c1 - c0), c1)
        for key in ("mid", "lo", "hi"):
            out[key][rows] = at
