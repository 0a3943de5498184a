"""The ``[twin]`` section: the digital twin on the agent (SOC by EKF, cycles, models, alarms) and its per-driver
cell settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from agent.config.sections import Strict


class TwinCellConfig(Strict):
    """What the twin assumes about the cells of one driver (or one cell); unset keys fall back to [twin]."""

    chemistry: str | None = Field(
        None, description="chemistry parameter file name in simulator/params, e.g. 'nmc811', 'lfp'"
    )
    nominal_capacity_ah: float | None = Field(None, gt=0, le=5000)

    @field_validator("chemistry")
    @classmethod
    def _known_chemistry(cls, v: str | None) -> str | None:
        if v is not None:
            from simulator.chemistry import available

            if v not in available():
                raise ValueError(f"unknown chemistry {v!r}; known: {', '.join(available())}")
        return v


class TwinAlarmConfig(Strict):
    """Anomaly thresholds. Each (cell, kind) raises at most one event per ``repeat_s`` while the condition lasts."""

    voltage_residual_mv: float = Field(
        40.0,
        gt=0,
        description="|measured - twin-predicted voltage|, smoothed "
        "(assumes the chemistry file describes the cells; raise it for generic ones)",
    )
    voltage_noise_mv: float = Field(25.0, gt=0, description="RMS of the voltage residual, smoothed")
    residual_window_s: float = Field(60.0, gt=0, description="smoothing time constant of the residuals")
    residual_max_step_s: float = Field(
        10.0, gt=0, description="samples further apart than this do not feed the residual alarms (coarse data)"
    )
    max_temperature_c: float = Field(60.0, description="over-temperature alarm")
    thermal_rate_c_per_min: float = Field(
        1.5, gt=0, description="temperature rise rate the twin's Joule-heating and cooling model does not explain"
    )
    thermal_window_s: float = Field(120.0, gt=0)
    capacity_outlier_fraction: float = Field(
        0.05, gt=0, lt=1, description="discharge capacity this fraction below the median of its sibling cells"
    )
    resistance_outlier_fraction: float = Field(
        0.5, gt=0, description="DC resistance this fraction above the siblings' median"
    )
    coulombic_efficiency_drop: float = Field(
        0.02, gt=0, lt=1, description="coulombic efficiency this far below the siblings' median"
    )
    min_siblings: int = Field(3, ge=2, description="cells of the same driver needed for a sibling comparison")
    stuck_s: float = Field(300.0, gt=0, description="a voltage reading unchanged this long under current")
    dropout_fraction: float = Field(0.2, gt=0, le=1, description="share of missing values over dropout_window_s")
    dropout_window_s: float = Field(300.0, gt=0)
    warmup_s: float = Field(300.0, ge=0, description="no residual alarms this long after a cell is first seen")
    repeat_s: float = Field(3600.0, gt=0, description="at most one event per cell and kind in this interval")


class TwinConfig(Strict):
    """The digital twin: SOC (EKF), cycles, per-cycle summaries, predictions, anomalies."""

    enabled: bool = True
    chemistry: str = Field("nmc811", description="default chemistry (a simulator driver's own setting wins)")
    nominal_capacity_ah: float | None = Field(None, gt=0, le=5000, description="default: the chemistry's")
    drivers: dict[str, TwinCellConfig] = Field(default_factory=dict, description="per driver name")
    cells: dict[str, TwinCellConfig] = Field(default_factory=dict, description="per cell id (capacity only)")
    ambient_c: float | None = Field(
        None, description="ambient temperature for the thermal model; default: estimated from the coolest cells"
    )
    eol_fraction: float = Field(0.8, gt=0, lt=1, description="end of life at this fraction of nominal capacity")
    rest_c_rate: float = Field(0.02, gt=0, description="|current| below this C-rate counts as rest")
    min_cycle_discharge_fraction: float = Field(
        0.1, gt=0, le=1, description="a discharge smaller than this fraction of nominal does not close a cycle (pulses)"
    )
    cycle_life_model: Path | None = Field(None, description="ONNX file; default: the shipped cycle_life.onnx")
    soh_model: Path | None = Field(
        None, description="SOH model file (<name>.refs, its <name>.json beside it); default: the shipped soh.refs"
    )
    forecast_cycles: int = Field(100, ge=1, le=2000, description="predicted_capacity_ah covers the next N cycles")
    qdv_every_cycles: int = Field(50, ge=1, description="publish Qd(V) every N cycles (and on the model's cycles)")
    qdv_max_points: int = Field(2048, ge=64, le=65536, description="discharge samples kept per cell and cycle")
    history_cycles: int = Field(500, ge=10, le=100_000, description="capacity history kept per cell")
    max_gap_s: float = Field(60.0, gt=0, description="a longer gap between a cell's samples is not integrated")
    alarms: TwinAlarmConfig = TwinAlarmConfig()

    @field_validator("chemistry")
    @classmethod
    def _known_chemistry(cls, v: str) -> str:
        return TwinCellConfig._known_chemistry(v) or v
