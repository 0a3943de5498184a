"""Fault points: named places where a test can make the agent die as a power cut would (SIGKILL, no cleanup).

Set ``BATTERY_TWIN_FAULTPOINT=<name>[:<n>]`` in the agent's environment: the n-th time (default 1st) the agent
passes ``<name>`` it kills itself with SIGKILL. Off (one dictionary lookup) when the variable is unset. Used by the
reliability tests to check the store-and-forward promise at every step between commit and acknowledgement.

Points: ``store.after_commit`` (a batch is durable, nothing published), ``uplink.after_publish`` (a message is
handed to the MQTT client), ``uplink.after_puback`` (the broker acknowledged it, the store does not know yet),
``uplink.after_mark_sent`` (the store recorded the acknowledgement); for model updates through IoT Jobs
(``agent/remote``): ``remote.after_download``, ``remote.after_canary``, ``remote.before_swap`` (the files are in
place, the pointer not yet), ``remote.after_swap`` (the pointer names the new model, the twin does not run it yet).
"""

from __future__ import annotations

import os
import signal

POINTS = ("store.after_commit", "uplink.after_publish", "uplink.after_puback", "uplink.after_mark_sent")
REMOTE_POINTS = ("remote.after_download", "remote.after_canary", "remote.before_swap", "remote.after_swap")

_spec = os.environ.get("BATTERY_TWIN_FAULTPOINT", "")
_name, _, _nth = _spec.partition(":")
_target = int(_nth) if _nth.isdigit() else 1
_hits = 0


def faultpoint(name: str) -> None:
    global _hits
    if name != _name:
        return
    _hits += 1
    if _hits >= _target:
        os.kill(os.getpid(), signal.SIGKILL)
