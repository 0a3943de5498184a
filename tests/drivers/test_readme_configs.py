"""The sample configs in the driver READMEs are valid configs (a README that lies is worse than none)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from agent.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("driver", ["modbus", "can", "serial", "cycler"])
def test_readme_sample_config_validates(driver):
    text = (ROOT / "drivers" / driver / "README.md").read_text()
    block = re.search(r"## Sample config\s+```toml\n(.*?)```", text, re.DOTALL)
    assert block, f"drivers/{driver}/README.md has no sample config"
    data = tomllib.loads(block.group(1))
    cfg = parse_config({"rig": "readme-rig", **data}, f"drivers/{driver}/README.md")
    assert [d.type for d in cfg.drivers] == [driver]


def test_config_template_hardware_examples_validate():
    """systemd/config.toml.example shows commented Modbus, CAN and serial sections: they must stay valid."""
    text = (ROOT / "systemd" / "config.toml.example").read_text()
    start = text.index("# Real hardware")
    lines = [ln[2:] if ln.startswith("# ") else "" for ln in text[start:].splitlines()[1:]]
    sections = "\n".join(
        ln for ln in lines if not ln.startswith(("Modbus", "CAN", "Serial")) and "systemd-networkd" not in ln
    )
    data = tomllib.loads(sections)
    cfg = parse_config({"rig": "template-rig", **data}, "systemd/config.toml.example")
    assert sorted(d.type for d in cfg.drivers) == ["can", "modbus", "serial"]
