"""Terraform, checkov and a moto server for the cloud tests, all offline.

Terraform installs the AWS provider from a local mirror (``$BATTERY_TWIN_TF_PLUGIN_DIR``, or the first of a few
usual folders that holds ``registry.terraform.io/hashicorp/aws``) through a CLI config file written here, with a
plugin cache so every module and example links one copy of the 700 MB provider. Without a mirror it falls back
to the registry (a machine with network access). Work happens in temporary copies of ``terraform/`` and
``cloud/sql/``, so the repository stays clean.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.ports import reserve_port

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
MODULES = sorted(p.name for p in (TF_DIR / "modules").iterdir() if p.is_dir())
EXAMPLES = sorted(p.name for p in (TF_DIR / "examples").iterdir() if p.is_dir())
MIRROR_CANDIDATES = [
    "/opt/tf-plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
]
# Every service the modules use, pointed at moto (the provider's endpoint names).
MOTO_SERVICES = [
    "cloudwatch",
    "ec2",
    "events",
    "iam",
    "iot",
    "kinesis",
    "kms",
    "logs",
    "quicksight",
    "redshiftdata",
    "redshiftserverless",
    "s3",
    "secretsmanager",
    "sns",
    "ssm",
    "sts",
]


class ToolMissing(Exception):
    pass


def terraform_bin() -> str:
    exe = os.environ.get("TERRAFORM") or shutil.which("terraform")
    if not exe:
        raise ToolMissing(
            "terraform is not installed (not on PATH, and $TERRAFORM is not set): the Terraform "
            "checks need terraform >= 1.6 (https://developer.hashicorp.com/terraform/install)"
        )
    return exe


def provider_mirror() -> Path | None:
    env = os.environ.get("BATTERY_TWIN_TF_PLUGIN_DIR")
    candidates = [env] if env else MIRROR_CANDIDATES
    for c in candidates:
        p = Path(c).expanduser()
        if (p / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return p
    if env:
        raise ToolMissing(f"BATTERY_TWIN_TF_PLUGIN_DIR={env} holds no registry.terraform.io/hashicorp/aws")
    return None


def write_cli_config(workdir: Path) -> Path:
    cache = workdir / "plugin-cache"
    cache.mkdir(parents=True, exist_ok=True)
    mirror = provider_mirror()
    if mirror is not None:
        install = (
            f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
            f'    include = ["registry.terraform.io/hashicorp/aws"]\n  }}\n'
            f'  direct {{\n    exclude = ["registry.terraform.io/hashicorp/aws"]\n  }}\n'
        )
    else:
        install = "  direct {}\n"
    cfg = workdir / "terraformrc"
    cfg.write_text(f'plugin_cache_dir = "{cache}"\nprovider_installation {{\n{install}}}\n')
    return cfg


class Terraform:
    """Runs terraform with the offline CLI config; raises with terraform's own output on failure."""

    def __init__(self, workdir: Path):
        self.exe = terraform_bin()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
        self.env.update(
            {
                "TF_CLI_CONFIG_FILE": str(write_cli_config(workdir)),
                "TF_IN_AUTOMATION": "1",
                "TF_INPUT": "0",
                "CHECKPOINT_DISABLE": "1",
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )

    def run(self, cwd: Path, *args: str, timeout_s: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [self.exe, *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} failed in {cwd} (exit {proc.returncode}):\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        return proc

    def init(self, cwd: Path) -> None:
        proc = self.run(cwd, "init", "-backend=false", "-input=false", "-no-color", check=False, timeout_s=300)
        if proc.returncode != 0:
            hint = (
                ""
                if provider_mirror()
                else (
                    " (no local provider mirror was found: set BATTERY_TWIN_TF_PLUGIN_DIR "
                    "to a folder holding registry.terraform.io/hashicorp/aws, or allow "
                    "network access to the Terraform registry)"
                )
            )
            raise AssertionError(f"terraform init failed in {cwd}{hint}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def copy_tree(dest: Path) -> Path:
    """terraform/ and cloud/sql/ under dest, in the repository's layout (modules read ../../../cloud/sql)."""
    shutil.copytree(
        TF_DIR,
        dest / "terraform",
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl", "*.tfplan"),
    )
    shutil.copytree(ROOT / "cloud" / "sql", dest / "cloud" / "sql")
    return dest / "terraform"


def moto_override(endpoint: str) -> str:
    """A provider override for a temporary copy of an example: fake credentials, every service at moto."""
    endpoints = "\n".join(f'    {s} = "{endpoint}"' for s in MOTO_SERVICES)
    return f"""provider "aws" {{
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true
  max_retries                 = 1
  endpoints {{
{endpoints}
  }}
}}
"""


class MotoServer:
    """moto's server on 127.0.0.1 (it stands in for AWS at plan time: STS, IoT endpoint, AZs, SSM, ...)."""

    def __init__(self, logdir: Path):
        self.port = reserve_port()  # moto's server binds it with SO_REUSEADDR
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logdir / "moto.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> MotoServer:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            raise ToolMissing("moto[server] is not installed: pip install -e '.[dev]' (make test does)") from None
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"moto server exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"moto server did not listen on 127.0.0.1:{self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def plan_json(tf: Terraform, example_dir: Path, tfvars: dict) -> dict:
    (example_dir / "test.auto.tfvars.json").write_text(json.dumps(tfvars))
    tf.init(example_dir)
    tf.run(example_dir, "plan", "-input=false", "-no-color", "-out=test.tfplan", timeout_s=400)
    return json.loads(tf.run(example_dir, "show", "-json", "test.tfplan").stdout)


def checkov_bin() -> Path:
    env = os.environ.get("BATTERY_TWIN_CHECKOV")
    exe = Path(env) if env else ROOT / ".venv-checkov" / "bin" / "checkov"
    if not exe.exists():
        raise ToolMissing(
            f"checkov not found at {exe}: it lives in its own virtual environment; make it with "
            "`make checkov-venv` (make test does), or point $BATTERY_TWIN_CHECKOV at a checkov"
        )
    return exe
