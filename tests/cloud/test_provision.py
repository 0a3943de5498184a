"""`battery-twin provision`: the device key and CSR, the config from Terraform's outputs, and the EC2 bootstrap
that drives both. A test CA signs the CSRs where IoT Core would; the provisioned config then connects to
mosquitto over mTLS like any rig."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.config import load_config
from agent.provision import AMAZON_ROOT_CA
from tests.cloud import tf

RIG = "prov-rig-01"
ROOT = tf.ROOT
BOOTSTRAP = ROOT / "terraform" / "modules" / "ec2_rig" / "bootstrap.sh"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", "provision", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def sign_csr(pki, csr_pem: bytes, days: int = 30) -> bytes:
    """What IoT Core does with a CSR: a client certificate for its public key (here from the test CA)."""
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(pki.ca_obj.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(pki.ca_key_obj, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def tf_outputs(
    rig: str,
    cert_pem: bytes | None,
    endpoint: str = "abc123-ats.iot.eu-west-1.amazonaws.com",
    basic_ingest_rule: str = "battery_twin_telemetry",
    basic_ingest_health_rule: str = "battery_twin_health",
) -> dict:
    """What `terraform output -json` prints for the examples' outputs."""
    return {
        "battery_twin_agent": {
            "sensitive": False,
            "value": {
                "endpoint": endpoint,
                "topic_prefix": "dt/battery-twin",
                "basic_ingest_rule": basic_ingest_rule,
                "basic_ingest_health_rule": basic_ingest_health_rule,
                "rigs": [rig, "other-rig"],
                "with_certificate": [rig] if cert_pem else [],
            },
        },
        "certificate_pems": {"sensitive": True, "value": {rig: cert_pem.decode()} if cert_pem else {}},
    }


def no_secret_in(text: str, key_file: Path) -> None:
    body = [ln for ln in key_file.read_text().splitlines() if ln and not ln.startswith("-----")]
    assert "PRIVATE KEY" not in text and not any(ln in text for ln in body), "key material in the output"


# ---------------------------------------------------------------------------------------------- csr
def test_csr_makes_a_private_key_0600_and_a_csr_for_the_rig(tmp_path):
    d = tmp_path / "certs"
    p = cli("csr", "--rig", RIG, "--dir", str(d))
    assert p.returncode == 0, p.stderr
    key, csr_file = d / f"{RIG}.key.pem", d / f"{RIG}.csr.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(d.stat().st_mode) == 0o700
    csr = x509.load_pem_x509_csr(csr_file.read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == RIG
    priv = serialization.load_pem_private_key(key.read_bytes(), None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert csr.public_key().public_bytes(serialization.Encoding.DER, spki) == priv.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )
    no_secret_in(p.stdout + p.stderr, key)

    # Again: the key is reused (a device keeps its identity), the CSR is for the same key.
    before = key.read_bytes()
    p2 = cli("csr", "--rig", RIG, "--dir", str(d))
    assert p2.returncode == 0 and "reused" in p2.stdout and key.read_bytes() == before
    assert x509.load_pem_x509_csr(csr_file.read_bytes()).public_key() == csr.public_key()
    p3 = cli("csr", "--rig", RIG, "--dir", str(d), "--new-key")
    assert p3.returncode == 2 and "exists" in p3.stderr and key.read_bytes() == before


def test_csr_refuses_a_rig_that_is_not_a_thing_name_and_a_key_others_can_read(tmp_path):
    p = cli("csr", "--rig", "bad rig/1", "--dir", str(tmp_path))
    assert p.returncode == 2 and "thing name" in p.stderr
    assert cli("csr", "--rig", RIG, "--dir", str(tmp_path)).returncode == 0
    os.chmod(tmp_path / f"{RIG}.key.pem", 0o644)
    p = cli("csr", "--rig", RIG, "--dir", str(tmp_path))
    assert p.returncode == 2 and "chmod 600" in p.stderr


# ---------------------------------------------------------------------------------------------- config
@pytest.fixture()
def device(tmp_path, pki):
    d = tmp_path / "certs"
    assert cli("csr", "--rig", RIG, "--dir", str(d)).returncode == 0
    cert = sign_csr(pki, (d / f"{RIG}.csr.pem").read_bytes())
    return d, cert


def test_config_from_terraform_outputs(tmp_path, device):
    d, cert = device
    out_json = tmp_path / "outputs.json"
    out_json.write_text(json.dumps(tf_outputs(RIG, cert)))
    cfg_file = tmp_path / "etc" / "agent.toml"
    p = cli("config", "--rig", RIG, "--tf-output", str(out_json), "--dir", str(d), "--out", str(cfg_file))
    assert p.returncode == 0, p.stderr
    no_secret_in(p.stdout + p.stderr, d / f"{RIG}.key.pem")
    cfg = load_config(cfg_file)
    assert cfg.rig == RIG
    u = cfg.uplink
    assert u.endpoint == "abc123-ats.iot.eu-west-1.amazonaws.com" and u.port == 8883
    assert u.basic_ingest_rule == "battery_twin_telemetry" and u.topic_prefix == "dt/battery-twin"
    assert u.basic_ingest_health_rule == "battery_twin_health"
    assert u.key == (d / f"{RIG}.key.pem").resolve() and u.cert.read_bytes() == cert
    ca = x509.load_pem_x509_certificate(u.ca.read_bytes())
    assert u.ca.name == AMAZON_ROOT_CA and "Amazon Root CA 1" in ca.subject.rfc4514_string()
    assert cfg.drivers and cfg.drivers[0].type == "simulator", "a new config starts from the default one"


def test_config_updates_an_existing_file_and_keeps_its_other_sections(tmp_path, device):
    d, cert = device
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(
        'rig = "old"\n[store]\npath = "/var/lib/bt/x.db"\nmax_bytes = 5000000\n\n'
        '[[drivers]]\ntype = "simulator"\nname = "bench"\ncells = 3\n\n[uplink]\nlinger_ms = 250\n'
    )
    out_json = tmp_path / "outputs.json"
    out_json.write_text(json.dumps(tf_outputs(RIG, cert, basic_ingest_rule="")))
    p = cli("config", "--rig", RIG, "--tf-output", str(out_json), "--dir", str(d), "--out", str(cfg_file))
    assert p.returncode == 0, p.stderr
    cfg = load_config(cfg_file)
    assert cfg.rig == RIG and str(cfg.store.path) == "/var/lib/bt/x.db" and cfg.store.max_bytes == 5000000
    assert [(x.name, x.cells) for x in cfg.drivers] == [("bench", 3)]
    assert cfg.uplink.linger_ms == 250 and cfg.uplink.basic_ingest_rule == "" and cfg.uplink.endpoint
    assert 'rig = "old"' in (tmp_path / "agent.toml.bak").read_text()


def test_config_refuses_a_certificate_of_another_key_or_an_unknown_rig(tmp_path, device, pki):
    d, _ = device
    other_cert, _ = pki.issue(RIG)  # right name, someone else's key
    out_json = tmp_path / "outputs.json"
    out_json.write_text(json.dumps(tf_outputs(RIG, other_cert.read_bytes())))
    cfg_file = tmp_path / "agent.toml"
    p = cli("config", "--rig", RIG, "--tf-output", str(out_json), "--dir", str(d), "--out", str(cfg_file))
    assert p.returncode == 2 and "not for the key" in p.stderr and not cfg_file.exists()
    out_json.write_text(json.dumps(tf_outputs("someone-else", None)))
    p = cli("config", "--rig", RIG, "--tf-output", str(out_json), "--dir", str(d), "--out", str(cfg_file))
    assert p.returncode == 2 and "not one of the deployment's rigs" in p.stderr
    out_json.write_text(json.dumps(tf_outputs(RIG, None)))
    p = cli("config", "--rig", RIG, "--tf-output", str(out_json), "--dir", str(d), "--out", str(cfg_file))
    assert p.returncode == 2 and "no certificate" in p.stderr
    p = cli("config", "--rig", "no-key-rig", "--endpoint", "e", "--dir", str(d), "--out", str(cfg_file))
    assert p.returncode == 2 and "provision csr" in p.stderr


@pytest.mark.parametrize("rule", ["bt/health", "bt_health/#", "$aws", "bt health"])
def test_config_refuses_a_health_rule_that_is_no_rule_name(tmp_path, device, rule):
    """A hand-edited or foreign output must not turn the health topic into a wildcard or another topic."""
    d, cert = device
    out_json = tmp_path / "outputs.json"
    out_json.write_text(json.dumps(tf_outputs(RIG, cert, basic_ingest_health_rule=rule)))
    cfg_file = tmp_path / "agent.toml"
    p = cli("config", "--rig", RIG, "--tf-output", str(out_json), "--dir", str(d), "--out", str(cfg_file))
    assert p.returncode == 2 and "uplink.basic_ingest_health_rule" in p.stderr, p.stderr
    assert not cfg_file.exists()


def test_config_reads_terraform_output_from_a_terraform_dir(tmp_path, device, terraform):
    """--terraform-dir runs the real `terraform output -json` (on a local-only configuration and state)."""
    d, cert = device
    (tmp_path / "tfdir").mkdir()
    outputs = tf_outputs(RIG, cert)
    (tmp_path / "tfdir" / "main.tf").write_text(
        f'output "battery_twin_agent" {{\n  value = jsondecode({json.dumps(json.dumps(outputs["battery_twin_agent"]["value"]))})\n}}\n'
        f'output "certificate_pems" {{\n  value     = {{ "{RIG}" = {json.dumps(cert.decode())} }}\n  sensitive = true\n}}\n'
    )
    terraform.run(tmp_path / "tfdir", "init", "-backend=false", "-input=false", "-no-color")
    terraform.run(tmp_path / "tfdir", "apply", "-auto-approve", "-input=false", "-no-color")
    env = {
        **os.environ,
        "PATH": f"{Path(terraform.exe).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CLI_CONFIG_FILE": terraform.env["TF_CLI_CONFIG_FILE"],
        "CHECKPOINT_DISABLE": "1",
    }
    cfg_file = tmp_path / "agent.toml"
    p = cli(
        "config",
        "--rig",
        RIG,
        "--terraform-dir",
        str(tmp_path / "tfdir"),
        "--dir",
        str(d),
        "--out",
        str(cfg_file),
        env=env,
    )
    assert p.returncode == 0, p.stderr
    assert load_config(cfg_file).uplink.cert.read_bytes() == cert


def test_provisioned_config_connects_over_mtls_and_publishes(tmp_path, pki, broker, subscriber, agent_proc):
    """Key and CSR from provision, certificate from a CA, config from provision: the agent gets its data through."""
    rig = "test-rig-01"  # the broker fixture's subscriber listens on dt/#
    d = tmp_path / "certs"
    assert cli("csr", "--rig", rig, "--dir", str(d)).returncode == 0
    (d / f"{rig}.cert.pem").write_bytes(sign_csr(pki, (d / f"{rig}.csr.pem").read_bytes()))
    cfg_file = tmp_path / "agent.toml"
    p = cli(
        "config",
        "--rig",
        rig,
        "--endpoint",
        "localhost",
        "--port",
        str(broker.port),
        "--ca",
        str(pki.ca_cert),
        "--dir",
        str(d),
        "--out",
        str(cfg_file),
        "--store",
        str(tmp_path / "store" / "agent.db"),
    )
    assert p.returncode == 0, p.stderr
    cfg = tomllib.loads(cfg_file.read_text())
    cfg["uplink"].update({"flow_control": "none", "linger_ms": 200, "health_interval_s": 2.0})
    cfg["drivers"] = [{"type": "simulator", "name": "sim", "cells": 2, "sample_hz": 10.0}]
    agent = agent_proc(cfg).start()
    agent.wait_log("uplink connected")
    subscriber.wait_for(lambda: len(set(subscriber.telemetry_seqs())) >= 50, 60, "50 readings at the broker")
    assert agent.stop() == 0, agent.log()[-2000:]
    topics = {t for t, _ in subscriber.snapshot()}
    assert f"dt/battery-twin/{rig}/telemetry" in topics


# ---------------------------------------------------------------------------------------------- EC2 bootstrap
FAKE_AWS = r'''#!/usr/bin/env python3
"""Stand-in for the AWS CLI's `ssm put-parameter` / `ssm get-parameter` (AWS cannot run here): a folder of files."""
import os, sys
store = os.environ["FAKE_SSM_DIR"]
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1]
path = os.path.join(store, opt("--name").strip("/").replace("/", "__"))
if args[:2] == ["ssm", "put-parameter"]:
    assert opt("--type") == "SecureString" and opt("--key-id") and "--overwrite" in args
    value = opt("--value")
    if value.startswith("file://"):
        value = open(value[7:]).read()
    open(path, "w").write(value)
elif args[:2] == ["ssm", "get-parameter"]:
    assert "--with-decryption" in args
    if not os.path.exists(path):
        sys.stderr.write("An error occurred (ParameterNotFound)\n"); sys.exit(254)
    print(open(path).read().rstrip("\n"))
else:
    sys.exit(f"fake aws: unexpected {args}")
'''


def test_ec2_bootstrap_posts_the_csr_then_installs_the_certificate_and_starts_the_service(tmp_path, pki):
    """bootstrap.sh as cloud-init and its timer run it, with the AWS CLI and systemctl replaced by stand-ins."""
    shims, ssm = tmp_path / "bin", tmp_path / "ssm"
    shims.mkdir()
    ssm.mkdir()
    (shims / "aws").write_text(FAKE_AWS)
    (shims / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/systemctl.log\n')
    for f in shims.iterdir():
        f.chmod(0o755)
    certs, config = tmp_path / "etc" / "certs", tmp_path / "etc" / "battery-twin.toml"
    conf = tmp_path / "bootstrap.json"  # as cloud-init writes it: Terraform's jsonencode of the settings
    conf.write_text(
        json.dumps(
            {
                "RIG": "sim-rig-ec2",
                "REGION": "eu-west-1",
                "CSR_PARAM": "/bt/rigs/sim-rig-ec2/csr",
                "CERT_PARAM": "/bt/rigs/sim-rig-ec2/certificate",
                "KMS_KEY_ID": "alias/bt",
                "ENDPOINT": "abc-ats.iot.eu-west-1.amazonaws.com",
                "TOPIC_PREFIX": "dt/battery-twin",
                "BASIC_INGEST_RULE": "bt_telemetry",
                "REPO_URL": "https://git.example.invalid/battery-twin.git",
                "REPO_REF": "v1.2.3",
            }
        )
    )
    env = {
        "PATH": f"{shims}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "FAKE_SSM_DIR": str(ssm),
        "BOOTSTRAP_CONF": str(conf),
        "CERT_DIR": str(certs),
        "CONFIG": str(config),
        "SERVICE_USER": "no-such-user-bt",
        "HOME": str(tmp_path),
    }

    def run(step: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(BOOTSTRAP), step], env=env, capture_output=True, text=True, timeout=120)

    p = run("cert")  # the timer fires before Terraform has issued anything: a quiet no-op
    assert p.returncode == 0 and "no certificate" in p.stdout and not config.exists()
    p = run("csr")
    assert p.returncode == 0, p.stderr
    key = certs / "sim-rig-ec2.key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(certs.stat().st_mode) == 0o700
    posted = (ssm / "bt__rigs__sim-rig-ec2__csr").read_text()
    assert posted.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    no_secret_in(p.stdout + p.stderr + posted, key)

    # Second apply: Terraform issues the certificate from the posted CSR and writes the certificate parameter.
    (ssm / "bt__rigs__sim-rig-ec2__certificate").write_bytes(sign_csr(pki, posted.encode()))
    p = run("cert")
    assert p.returncode == 0, p.stderr
    cfg = load_config(config)
    assert cfg.rig == "sim-rig-ec2" and cfg.uplink.endpoint == "abc-ats.iot.eu-west-1.amazonaws.com"
    assert cfg.uplink.basic_ingest_rule == "bt_telemetry" and cfg.uplink.key == key.resolve()
    assert cfg.drivers[0].type == "simulator"
    calls = (tmp_path / "systemctl.log").read_text().splitlines()
    assert calls == [
        "enable battery-twin.service",
        "restart battery-twin.service",
        "disable --now battery-twin-cert.timer",
    ]
