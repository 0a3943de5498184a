"""Dependency floors sit past the known advisories (issue 14, Low): a resolver may never pick a vulnerable version.

The table names each advisory and the first version that fixes it (docs/security.md lists the same). The check
reads pyproject.toml's own requirement strings, so loosening a floor fails here.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

FIXED_IN = {
    # package: (first fixed version, advisories)
    "aiohttp": ("3.12.14", "CVE-2024-23334, CVE-2024-30251, CVE-2024-52304, CVE-2025-53643"),
    "cryptography": ("44.0.1", "CVE-2024-26130 (42.0.4); OpenSSL in the wheels, CVE-2024-12797 (44.0.1)"),
    "orjson": ("3.9.15", "CVE-2024-27454"),
    "pydantic": ("2.4.0", "CVE-2024-3772"),
    "scikit-learn": ("1.5.0", "CVE-2024-5206"),
    "onnx": ("1.16.0", "CVE-2024-27318, CVE-2024-27319"),
    "pyarrow": ("14.0.1", "CVE-2023-47248"),
    "tqdm": ("4.66.3", "CVE-2024-34062"),
}


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    return {r.name.lower(): r for r in reqs}


@pytest.mark.parametrize("package", sorted(FIXED_IN))
def test_floor_is_past_the_advisories(package):
    fixed, advisories = FIXED_IN[package]
    req = requirements().get(package)
    assert req is not None, f"{package} is no longer a dependency: drop it from this table"
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    assert floors and min(floors) >= Version(fixed), f"{req}: must allow nothing below {fixed} ({advisories})"
    assert not req.specifier.contains("0.0.1"), f"{req} still admits ancient versions"
    assert req.specifier.contains(version(package), prereleases=True), f"installed {package} {version(package)}"
