"""The lock of the edge install (container/requirements-edge.txt) agrees with pyproject.toml: every base and
[dashboard] dependency is locked at a version its specifier allows, nothing of [train] is, and every entry is
pinned with hashes (the image and the arm64 install use `pip install --require-hashes`). Offline: `make lock`
regenerates it."""

from __future__ import annotations

import shutil
import subprocess
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT
from tests.container.support import TRAINING_PACKAGES, read_lock


def test_lock_covers_the_edge_dependencies_at_allowed_versions():
    lock = read_lock()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dashboard"]]]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is a dependency in pyproject.toml but not in the lock: run `make lock`"
        version, _ = lock[name]
        assert req.specifier.contains(version, prereleases=True), f"{name}=={version} violates {req}: run `make lock`"
    for req in [Requirement(r) for r in project["optional-dependencies"]["train"]] + [
        Requirement(n) for n in TRAINING_PACKAGES
    ]:
        assert canonicalize_name(req.name) not in lock, f"training dependency {req.name} in the edge lock"


def test_every_locked_package_is_pinned_with_a_hash_per_wheel():
    lock = read_lock()
    assert len(lock) >= 20
    for name, (version, hashes) in lock.items():
        assert version and all(len(h) == 64 for h in hashes) and 1 <= len(hashes) <= 2, (name, version, hashes)
    # Compiled packages need one wheel per architecture (x86_64 and aarch64).
    for compiled in ("numpy", "onnxruntime", "awscrt", "pydantic-core", "orjson", "cryptography"):
        assert len(lock[compiled][1]) == 2, f"{compiled} needs a wheel for each architecture"


def test_container_scripts_are_shellcheck_clean():
    sc = shutil.which("shellcheck")
    assert sc, "shellcheck is not installed (apt-get install shellcheck; `make test` does this when root)"
    scripts = sorted((ROOT / "container").glob("*.sh"))
    assert len(scripts) >= 4
    p = subprocess.run([sc, *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
