"""The dependency arrows of DESIGN.md, as import-linter contracts (pyproject.toml), shown to bite.

``make lint`` runs ``lint-imports`` on the tree; here each contract is broken on purpose in a copy of the tree
(one forbidden import added) and ``lint-imports`` must fail naming that contract. And the simulator stays a
light leaf: a fresh interpreter that imports ``simulator.chemistry`` (as the agent's config does to check a
chemistry name) must not load the rig model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "drivers", "simulator", "cloud")
LAYERS = "Layers run one way: cloud -> agent -> drivers -> simulator"
EDGE = "The edge install carries no training dependencies"
CHEMISTRY = "Importing simulator.chemistry does not load the rig model"


def lint_imports_exe() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        raise AssertionError(f"lint-imports is not installed next to {sys.executable}: pip install -e '.[dev]'")
    return str(exe)


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy's packages, not the editable install's
    return subprocess.run(
        [lint_imports_exe(), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's Python packages and pyproject.toml (with its contracts), copied once per module."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.onnx", "static"))
    return root


def test_the_tree_keeps_every_contract(tree_copy: Path) -> None:
    proc = lint_imports(tree_copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("simulator/chemistry.py", "import drivers.base", LAYERS),  # the leaf imports a layer above it
        ("simulator/rig.py", "from drivers.emulator import RigFeed", LAYERS),
        ("drivers/base.py", "import agent.config", LAYERS),  # a driver reaches into the agent
        ("agent/config/__init__.py", "import cloud.cli", LAYERS),  # the edge agent loads the training side
        ("drivers/stale.py", "import sklearn", EDGE),  # a training dependency on the edge
        ("agent/validate.py", "import scipy.signal", EDGE),
        ("simulator/chemistry.py", "import simulator.rig", CHEMISTRY),  # the light module drags the rig in
    ],
)
def test_a_forbidden_import_breaks_its_contract(tree_copy: Path, module: str, line: str, contract: str) -> None:
    path = tree_copy / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{line}  # added by the test\n")
        proc = lint_imports(tree_copy)
    finally:
        path.write_text(original)
    assert proc.returncode != 0, f"lint-imports accepted {line!r} in {module}:\n{proc.stdout}"
    assert f"{contract} BROKEN" in proc.stdout, proc.stdout
    importer = module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    assert importer in proc.stdout, proc.stdout  # the report names the offending module


def fresh_modules(code: str) -> set[str]:
    """Modules of the project loaded by a fresh interpreter after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in sys.modules if m.split('.')[0] in {PACKAGES!r}))"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_importing_chemistry_does_not_load_the_rig() -> None:
    loaded = fresh_modules("import simulator.chemistry\nsimulator.chemistry.get_chemistry('lfp')")
    assert "simulator.chemistry" in loaded
    assert not loaded & {"simulator.rig", "simulator.cell", "simulator.protocol", "simulator.basic"}, sorted(loaded)


def test_checking_a_chemistry_name_in_the_config_loads_no_rig() -> None:
    loaded = fresh_modules("from agent.config import TwinCellConfig\nTwinCellConfig(chemistry='nmc811')")
    assert "simulator.chemistry" in loaded  # the check did run
    assert "simulator.rig" not in loaded, sorted(loaded)


def test_the_rig_still_loads_on_first_use_from_the_package() -> None:
    loaded = fresh_modules("import simulator\nassert 'simulator.rig' not in __import__('sys').modules\nsimulator.Rig")
    assert "simulator.rig" in loaded
