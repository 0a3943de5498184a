"""Tests for running the agent as a service: systemd unit, installer, lifecycle (SIGTERM/SIGHUP), sd_notify, doctor."""
