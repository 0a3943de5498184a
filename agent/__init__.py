"""battery-twin edge agent: config, pipeline, twin, store, uplink, health, CLI."""

__version__ = "0.1.0"
