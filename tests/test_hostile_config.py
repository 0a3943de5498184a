"""Hostile or broken files a real site produces, fed to the config loader and to ``provision`` (issue 14).

Each case asserts a clear error naming the file (``ConfigError`` / ``ProvisionError``, exit 2 on the command
line), never a crash, and that nothing is lost or widened: an existing folder keeps its mode, a rewritten config
keeps its mode, a new key is on disk before ``provision csr`` returns.
"""

from __future__ import annotations

import os
import stat
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import provision
from agent.config import ConfigError, is_thing_name, load_config, parse_config
from drivers.tomlfile import MAX_TOML_BYTES, MAX_TOML_DEPTH

RIG = "hostile-rig-01"
THING_ALPHABET = set(string.ascii_letters + string.digits + ":_-")
BASE = f'rig = "{RIG}"\n[store]\npath = "x.db"\n'


# ---------------------------------------------------------------------------------------------- the rig id
@pytest.mark.parametrize("rig", ["rig\n", "rig\r\n", "\nrig", "rig\n\n", "ri g", "rig/1", "", "r" * 129, "rïg"])
def test_a_rig_id_with_a_newline_or_a_foreign_character_is_refused(rig: str) -> None:
    with pytest.raises(ConfigError, match=r"rig: must be an AWS IoT thing name"):
        parse_config({"rig": rig})
    with pytest.raises(provision.ProvisionError, match="not an AWS IoT thing name"):
        provision.make_key_and_csr(rig, Path("/nonexistent/never-made"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(sorted(THING_ALPHABET) + ["\n", "\r", " ", "\x00", "/", "é"]), max_size=140))
def test_is_thing_name_is_exactly_the_alphabet_and_length(text: str) -> None:
    assert is_thing_name(text) == (1 <= len(text) <= 128 and set(text) <= THING_ALPHABET)


# ---------------------------------------------------------------------------------------------- the file
def nested_arrays(depth: int) -> str:
    return BASE + "x = " + "[" * depth + "]" * depth + "\n"


def nested_tables(depth: int) -> str:
    return BASE + "x = " + "{a = " * depth + "1" + "}" * depth + "\n"


def nested_headers(depth: int) -> str:
    return BASE + "[" + ".".join(["t"] * depth) + "]\nk = 1\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (nested_arrays(5000), "nested too deeply"),  # tomllib recursed into RecursionError
        (nested_tables(5000), "nested too deeply"),
        (nested_arrays(MAX_TOML_DEPTH + 5), f"nested more than {MAX_TOML_DEPTH} levels"),  # parses, still refused
        (nested_headers(MAX_TOML_DEPTH + 5), f"nested more than {MAX_TOML_DEPTH} levels"),
        (BASE + "#" + "x" * MAX_TOML_BYTES + "\n", "larger than 1024 KiB"),  # valid TOML, but no config is 1 MiB
        (b'rig = "r"\n# \xff\xfe not UTF-8\n', "not UTF-8"),
        ('rig = "r"\n[store\n', "not valid TOML"),
    ],
    ids=["arrays-5000", "tables-5000", "arrays-37", "headers-37", "over-1MiB", "not-utf8", "broken"],
)
def test_a_hostile_file_is_a_config_error_not_a_crash(tmp_path: Path, body: str | bytes, expected: str) -> None:
    f = tmp_path / "agent.toml"
    f.write_bytes(body if isinstance(body, bytes) else body.encode())
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert str(err.value).startswith(f"{f}: ") and expected in str(err.value), str(err.value)[:500]


def test_config_check_exits_2_on_a_deeply_nested_file(tmp_path: Path) -> None:
    f = tmp_path / "agent.toml"
    f.write_text(nested_arrays(5000))
    p = subprocess.run([sys.executable, "-m", "agent", "config", "check", str(f)], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "nested too deeply" in p.stderr and "Traceback" not in p.stderr


def test_an_error_quotes_a_pasted_megabyte_short(tmp_path: Path) -> None:
    f = tmp_path / "agent.toml"
    f.write_text(f'rig = "{"x" * 500_000}"\n')
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert "500002 characters" in str(err.value) and len(str(err.value)) < 2000


def test_a_deep_profile_is_a_config_error_naming_the_driver(tmp_path: Path) -> None:
    prof = tmp_path / "deep.toml"
    prof.write_text('name = "deep"\n[stream]\nregex = "(?P<voltage_v>x)"\nscale = ' + "{a = " * 3000 + "}" * 3000)
    f = tmp_path / "agent.toml"
    f.write_text(BASE + f'[[drivers]]\ntype = "serial"\nport = "/dev/null"\nprofile = "{prof}"\n')
    with pytest.raises(ConfigError, match=r"drivers\[0\].*nested too deeply"):
        load_config(f)


# ---------------------------------------------------------------------------------------------- provision
def test_csr_leaves_an_existing_shared_folder_as_it_was(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    (shared / "README").write_text("other people's files live here too\n")
    kp, _, created = provision.make_key_and_csr(RIG, shared)
    assert created and stat.S_IMODE(shared.stat().st_mode) == 0o755  # was chmod 0700'd before
    assert stat.S_IMODE(kp.stat().st_mode) == 0o600


def test_csr_makes_a_new_folder_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        provision.make_key_and_csr(RIG, tmp_path / "a" / "certs")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "certs").stat().st_mode) == 0o700


def test_csr_refuses_a_folder_everybody_can_write(tmp_path: Path) -> None:
    public = tmp_path / "public"
    public.mkdir()
    os.chmod(public, 0o1777)  # like /tmp
    with pytest.raises(provision.ProvisionError, match="can be written by others"):
        provision.make_key_and_csr(RIG, public)
    assert list(public.iterdir()) == []  # no key left behind


def test_the_new_key_is_fsynced_before_csr_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A power cut right after `provision csr` must not leave an empty key whose CSR went off to be signed.
    (The power cut itself cannot be staged here: the test records which files reach os.fsync.)"""
    synced: set[tuple[int, int]] = set()
    real = os.fsync

    def recording_fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    kp, cp, _ = provision.make_key_and_csr(RIG, tmp_path / "certs")
    for f in (kp, cp, kp.parent):
        st = f.stat()
        assert (st.st_dev, st.st_ino) in synced, f"{f} was not fsynced"


def uplink(tmp_path: Path) -> dict[str, str]:
    files = {k: tmp_path / f"device.{k}.pem" for k in ("cert", "key", "ca")}
    for f in files.values():
        f.write_text("-----BEGIN PLACEHOLDER-----\n")
    return {"endpoint": "abc-ats.iot.eu-west-1.amazonaws.com", **{k: str(f) for k, f in files.items()}}


@pytest.mark.parametrize("mode", [0o640, 0o600])
def test_config_rewrite_keeps_the_files_mode(tmp_path: Path, mode: int) -> None:
    out = tmp_path / "agent.toml"
    out.write_text(BASE + '[dashboard]\ntoken = "s3cret-token-for-the-dashboard"\n')
    os.chmod(out, mode)  # install.sh makes it 0640 root:battery-twin; it holds the dashboard token
    provision.write_config(out, RIG, uplink(tmp_path))
    assert stat.S_IMODE(out.stat().st_mode) == mode  # was 0644 before
    assert load_config(out).uplink.endpoint == "abc-ats.iot.eu-west-1.amazonaws.com"


def test_a_new_config_is_not_world_readable(tmp_path: Path) -> None:
    out = tmp_path / "new.toml"
    provision.write_config(out, RIG, uplink(tmp_path))
    assert stat.S_IMODE(out.stat().st_mode) == provision.CONFIG_MODE == 0o640


def test_config_refuses_to_update_a_hostile_file(tmp_path: Path) -> None:
    out = tmp_path / "agent.toml"
    out.write_text(nested_arrays(5000))
    with pytest.raises(provision.ProvisionError, match="nested too deeply"):
        provision.write_config(out, RIG, {"endpoint": "e"})
    assert out.read_text() == nested_arrays(5000)  # untouched
