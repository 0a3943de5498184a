"""First-run guidance (issue 19): `battery-twin config default`, `run --help` and the text printed after start-up
say what README's "Two commands" section says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from agent.config import load_config
from agent.guidance import first_run_text

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SECTION = README.split("## Two commands", 1)[1].split("\n## ", 1)[0]


def _cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


def test_readme_shows_the_default_config_verbatim():
    blocks = re.findall(r"```toml\n(.*?)```", SECTION, re.DOTALL)
    assert _cli("config", "default") in blocks, "README's default config differs from `battery-twin config default`"


def test_run_help_and_printed_guidance_match_the_readme():
    help_text = " ".join(_cli("run", "--help").split())
    cfg = load_config(None)
    printed = first_run_text(cfg, "http://127.0.0.1:8080/", None)
    for phrase in ("battery-twin provision", "Ctrl-C", "battery-twin config default", "http://127.0.0.1:8080/"):
        assert phrase in SECTION and phrase in printed, phrase
    for phrase in ("simulated past", "4 NMC811", "4 LFP", "battery-twin config default", "Ctrl-C"):
        assert phrase in help_text, phrase
    # the README quotes the printed block line by line (the simulated line shortened with "(...)")
    quoted = re.search(r"```text\n(.*?)```", SECTION, re.DOTALL)
    assert quoted
    for line in printed.splitlines()[1:]:
        head = line.split("(health")[0].split(" (SQLite")[0]
        assert any(q.startswith(head[:60]) for q in quoted.group(1).splitlines()), line
    assert f"{cfg.store.path}" in printed and "sim-nmc 120, sim-lfp 120" in printed
