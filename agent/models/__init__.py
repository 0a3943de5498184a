"""Default model files shipped with the agent, built by ``battery-twin model build-defaults`` (fixed seeds)."""
