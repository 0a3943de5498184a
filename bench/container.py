"""The container image's figures: its size, how long `make image` takes with the caches warm, how long the agent
takes to start in it (the image carries no bytecode for its dependencies), and what the HEALTHCHECK probe costs.

Needs root and podman (`make test` installs it). The image is built first (container/image.sh, caches reused).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PODMAN = str(ROOT / "container" / "podman.sh")
IMAGE = "localhost/battery-twin:edge-amd64"
CPU_OF = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:]); "
    "r = resource.getrusage(resource.RUSAGE_CHILDREN); print(round(r.ru_utime + r.ru_stime, 3))"
)


def podman(*args: str, timeout_s: float = 300) -> str:
    p = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout_s, check=True)
    return p.stdout + p.stderr  # `podman logs` replays the container's stderr (the agent's log) on stderr


def cpu_s(*cmd: str) -> float:
    """CPU seconds (user + system) of one command run inside the image."""
    out = subprocess.run(
        [PODMAN, "run", "--rm", "--network=none", "--entrypoint", "python", IMAGE, "-c", CPU_OF, *cmd],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def start_to_started_s(name: str) -> float:
    """`podman run` of the default config (simulator, uplink off) until the agent logs 'agent started'."""
    t0 = time.monotonic()
    podman("run", "-d", "--name", name, "--read-only", "--cap-drop=ALL", IMAGE)
    try:
        while "agent started" not in podman("logs", name):
            if time.monotonic() - t0 > 120:
                raise TimeoutError("the agent did not start within 120 s")
            time.sleep(0.1)
        return round(time.monotonic() - t0, 1)
    finally:
        subprocess.run([PODMAN, "rm", "-f", "-v", "-t", "0", name], capture_output=True, timeout=120)


def main() -> dict:
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    subprocess.run([str(ROOT / "container" / "image.sh"), "amd64"], capture_output=True, check=True, timeout=3600)
    cached_build_s = round(time.monotonic() - t0, 1)
    size = int(
        json.loads(subprocess.run([PODMAN, "image", "inspect", IMAGE], capture_output=True, check=True).stdout)[0][
            "Size"
        ]
    )
    probe = ["python", "-m", "agent.healthfile", "--file", "/nonexistent"]
    return {
        "image_size_mb": round(size / 1e6, 1),
        "image_size_goal_mb": 250,
        "make_image_cached_s": cached_build_s,
        "start_to_agent_started_s": start_to_started_s(f"bt-bench-{uuid.uuid4().hex[:8]}"),
        "healthcheck_probe_cpu_s": cpu_s(*probe),
        "battery_twin_health_cpu_s": cpu_s("battery-twin", "health", "--file", "/nonexistent"),
        "conditions": f"edge image amd64, podman 4.3 + runc; 1-min load average {load:.1f} on "
        f"{os.cpu_count()} cores when started; cached = base and layers cached, sources unchanged",
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
