"""``battery-twin provision``: the device's key and CSR, and the agent config from ``terraform output -json``.

The private key is made here, on the device, and never leaves it: Terraform signs the CSR into a certificate
(``aws_iot_certificate`` with ``csr``), so no private key is ever in Terraform state. Steps:

1. ``battery-twin provision csr --rig RIG``: ``RIG.key.pem`` (EC P-256, mode 0600, written through to disk)
   and ``RIG.csr.pem`` (CN = RIG) in ``--dir`` (made 0700 if new; an existing folder keeps its mode, but one
   everybody can write to is refused). An existing key is reused, never overwritten by accident.
2. Copy the CSR to the Terraform example's ``csr/`` folder and ``terraform apply``.
3. ``battery-twin provision config --rig RIG --terraform-dir DIR --out FILE``: writes the certificate next to the
   key (after checking it belongs to that key), the Amazon root CA, and the agent config's ``rig`` and
   ``[uplink]`` (endpoint, cert, key, CA, topic prefix, Basic Ingest rule), keeping the rest of FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config import DEFAULT_CONFIG_TOML, ConfigError, is_thing_name, parse_config
from agent.files import fsync_dir
from drivers.tomlfile import TomlFileError, read_toml

EXIT_ERROR = 2
AMAZON_ROOT_CA = "AmazonRootCA1.pem"
TF_OUTPUT_AGENT = "battery_twin_agent"
TF_OUTPUT_CERTS = "certificate_pems"


class ProvisionError(Exception):
    """A problem the user can fix; the message says how."""


# ---------------------------------------------------------------------------------------------- key and CSR
def key_path(directory: Path, rig: str) -> Path:
    return directory / f"{rig}.key.pem"


def csr_path(directory: Path, rig: str) -> Path:
    return directory / f"{rig}.csr.pem"


def cert_path(directory: Path, rig: str) -> Path:
    return directory / f"{rig}.cert.pem"


def _check_rig(rig: str) -> None:
    if not is_thing_name(rig):
        raise ProvisionError(f"rig {rig!r} is not an AWS IoT thing name: 1-128 of letters, digits, ':', '_', '-'")


CONFIG_MODE = 0o640  # a new config file; an existing one keeps its mode (install.sh makes it 0640 root:service)


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (no window in which it is readable by others), never through
    a link, and on disk before we return: a device that loses power right after ``provision csr`` must not come
    back with an empty key whose CSR was already sent to be signed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)


def _write_public(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` atomically (a temporary file, fsync, rename) with ``data`` at ``mode``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fchmod(f.fileno(), mode)  # whatever the umask
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _key_folder(directory: Path) -> None:
    """Make ``directory`` 0700 if it does not exist; an existing folder keeps its mode (it may be shared, e.g.
    /etc/battery-twin/certs with the service group), but one that everybody can write to (/tmp) is refused:
    anyone there could plant or swap the certificate and the CSR."""
    if not directory.exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
        return
    st = directory.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ProvisionError(f"{directory} is not a folder")
    if st.st_mode & 0o002:
        raise ProvisionError(
            f"{directory} can be written by others (mode {stat.S_IMODE(st.st_mode):o}): keep the device key in a "
            f"folder only you can change, e.g. --dir certs (made 0700), or run: chmod go-w {directory}"
        )


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ProvisionError(f"{path} is not an unencrypted PEM private key ({type(exc).__name__})") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ProvisionError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
    return key  # type: ignore[return-value]


def make_key_and_csr(rig: str, directory: Path, new_key: bool = False) -> tuple[Path, Path, bool]:
    """Make (or reuse) the device key and write a CSR for it. Returns (key path, CSR path, key was new)."""
    _check_rig(rig)
    _key_folder(directory)
    kp, cp = key_path(directory, rig), csr_path(directory, rig)
    if kp.exists() and new_key:
        raise ProvisionError(
            f"{kp} exists; move it away yourself if you really mean to replace the device key "
            "(its certificate stops working)"
        )
    created = not kp.exists()
    if created:
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(
            kp,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
    else:
        key = load_key(kp)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, rig)]))
        .sign(key, hashes.SHA256())
    )
    _write_public(cp, csr.public_bytes(serialization.Encoding.PEM))
    return kp, cp, created


def _public_der(public_key: Any) -> bytes:
    return bytes(public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def check_cert_matches_key(cert_pem: bytes, key: Path) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ProvisionError("the certificate is not a PEM X.509 certificate") from None
    if _public_der(cert.public_key()) != _public_der(load_key(key).public_key()):
        raise ProvisionError(
            f"the certificate is not for the key {key}: was the CSR made from another key? "
            "Make the CSR again with `battery-twin provision csr` and apply again"
        )
    return cert


# ---------------------------------------------------------------------------------------------- terraform outputs
def read_terraform_outputs(terraform_dir: Path | None, output_file: Path | None) -> dict[str, Any]:
    """``terraform output -json`` as a dict of name -> value (from a directory, or a file saved from it)."""
    if output_file is not None:
        try:
            raw = json.loads(output_file.read_text())
        except (OSError, ValueError) as exc:
            raise ProvisionError(f"cannot read terraform outputs from {output_file}: {exc}") from None
    else:
        assert terraform_dir is not None
        if shutil.which("terraform") is None:
            raise ProvisionError(
                "terraform is not on PATH; save `terraform output -json` to a file where it is "
                "and pass it with --tf-output"
            )
        try:
            proc = subprocess.run(
                ["terraform", f"-chdir={terraform_dir}", "output", "-json"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ProvisionError("terraform output -json did not finish within 120 s") from None
        if proc.returncode != 0:
            raise ProvisionError(f"terraform output -json failed in {terraform_dir}: {proc.stderr.strip()[:500]}")
        raw = json.loads(proc.stdout or "{}")
    return {k: (v.get("value") if isinstance(v, dict) and "value" in v else v) for k, v in raw.items()}


def uplink_from_outputs(outputs: dict[str, Any], rig: str) -> tuple[dict[str, Any], bytes | None]:
    """(uplink settings, certificate PEM or None) for ``rig`` from the example's outputs."""
    agent = outputs.get(TF_OUTPUT_AGENT)
    if not isinstance(agent, dict) or not agent.get("endpoint"):
        raise ProvisionError(
            f"the terraform outputs have no {TF_OUTPUT_AGENT} with an endpoint: was this "
            "applied from terraform/examples/*?"
        )
    if rig not in (agent.get("rigs") or []):
        raise ProvisionError(
            f"rig {rig!r} is not one of the deployment's rigs {agent.get('rigs')}: add it to var.rigs and apply"
        )
    pem = (outputs.get(TF_OUTPUT_CERTS) or {}).get(rig)
    uplink = {
        "endpoint": agent["endpoint"],
        "topic_prefix": agent.get("topic_prefix") or "dt/battery-twin",
        "basic_ingest_rule": agent.get("basic_ingest_rule") or "",
        "basic_ingest_health_rule": agent.get("basic_ingest_health_rule") or "",
    }
    return uplink, pem.encode() if pem else None


# ---------------------------------------------------------------------------------------------- config file
def write_config(out: Path, rig: str, uplink: dict[str, Any], store_path: str | None = None) -> bool:
    """Set ``rig`` and ``[uplink]`` in ``out`` (created from the default config if missing), keeping the rest.

    The result is validated before it is written; returns True if an existing file was updated (its previous
    version is kept as ``out.bak``; comments are not carried over). An existing file keeps its mode (and owner and
    group when run as root); a new one is made 0640 (it may hold the dashboard token)."""
    existed = out.exists()
    try:
        doc = read_toml(out) if existed else tomllib.loads(DEFAULT_CONFIG_TOML)
    except TomlFileError as exc:
        raise ProvisionError(f"cannot read {out} as a config: {exc.problem}") from None
    doc["rig"] = rig
    doc.setdefault("uplink", {}).update({k: str(v) if isinstance(v, Path) else v for k, v in uplink.items()})
    if store_path:
        doc.setdefault("store", {})["path"] = store_path
    text = tomli_w.dumps(doc)
    try:
        parse_config(tomllib.loads(text), str(out))
    except ConfigError as exc:
        raise ProvisionError(f"the resulting config would not be valid:\n{exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    mode = CONFIG_MODE
    if existed:
        st = out.stat()
        mode = stat.S_IMODE(st.st_mode)  # keep what the admin (or install.sh) chose
        shutil.copy2(out, out.with_name(out.name + ".bak"))
    _write_public(out, text.encode(), mode)
    if existed and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:  # root updating /etc/battery-twin/agent.toml: keep root:battery-twin
            os.chown(out, st.st_uid, st.st_gid)
        except PermissionError:
            pass  # not root: the file is now ours, with the mode it had
    return existed


def packaged_ca() -> bytes:
    return files("agent").joinpath("certs", AMAZON_ROOT_CA).read_bytes()


# ---------------------------------------------------------------------------------------------- CLI
def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("provision", help="make the device key and CSR; write the agent config after terraform apply")
    psub = p.add_subparsers(dest="provision_command", metavar="ACTION")
    psub.required = True

    c = psub.add_parser("csr", help="make the device private key (0600, reused if present) and a CSR for it")
    c.add_argument("--rig", required=True, help="rig id = IoT thing name (the CSR's CN)")
    c.add_argument(
        "--dir",
        type=Path,
        default=Path("certs"),
        help="folder for RIG.key.pem and RIG.csr.pem (made 0700 if new; default ./certs)",
    )
    c.add_argument("--new-key", action="store_true", help="refuse to reuse an existing key (fails if one exists)")
    c.set_defaults(func=cmd_csr)

    g = psub.add_parser("config", help="write the certificate, CA and the agent config's [uplink] for RIG")
    g.add_argument("--rig", required=True, help="rig id = IoT thing name")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--terraform-dir", type=Path, help="run `terraform output -json` in this folder")
    src.add_argument("--tf-output", type=Path, help="a file saved from `terraform output -json`")
    src.add_argument(
        "--endpoint",
        help="no Terraform at hand: the IoT endpoint (the certificate must already be in DIR/RIG.cert.pem)",
    )
    g.add_argument("--dir", type=Path, default=Path("certs"), help="folder with RIG.key.pem (default ./certs)")
    g.add_argument("--out", type=Path, required=True, help="agent config file to write or update")
    g.add_argument("--ca", type=Path, help="CA bundle to use instead of the packaged Amazon Root CA 1")
    g.add_argument("--port", type=int, help="broker port (default: the config's, 8883)")
    g.add_argument("--topic-prefix", help="with --endpoint: topic prefix (default dt/battery-twin)")
    g.add_argument("--basic-ingest-rule", help="with --endpoint: the telemetry rule for Basic Ingest")
    g.add_argument("--basic-ingest-health-rule", help="with --endpoint: the health rule for Basic Ingest")
    g.add_argument("--store", help="store.path to set (e.g. /var/lib/battery-twin/battery-twin.db)")
    g.add_argument(
        "--force",
        action="store_true",
        help="accepted for scripts; an existing config is always updated in place (previous version kept as .bak)",
    )
    g.set_defaults(func=cmd_config)
    # More actions from other packages (cloud: signing-key), found by entry point so the agent never imports them.
    for ep in entry_points(group="battery_twin.provision"):
        try:
            ep.load()(psub)
        except ImportError:
            continue


def cmd_csr(args: argparse.Namespace) -> int:
    try:
        kp, cp, created = make_key_and_csr(args.rig, args.dir, new_key=args.new_key)
    except (ProvisionError, OSError) as exc:
        print(f"battery-twin provision csr: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{'made' if created else 'reused'} private key {kp} (mode 0600; it never leaves this device)")
    print(f"wrote CSR {cp}")
    print(
        f"next: copy {cp.name} into the Terraform example's csr/ folder (var.csr_dir), terraform apply, then "
        f"battery-twin provision config --rig {args.rig} --terraform-dir <example> --dir {args.dir} --out <config>"
    )
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    try:
        _check_rig(args.rig)
        kp, cp = key_path(args.dir, args.rig), cert_path(args.dir, args.rig)
        if not kp.exists():
            raise ProvisionError(
                f"no private key {kp}: run `battery-twin provision csr --rig {args.rig} "
                f"--dir {args.dir}` first (on this device)"
            )
        if args.endpoint:
            uplink: dict[str, Any] = {
                "endpoint": args.endpoint,
                "topic_prefix": args.topic_prefix or "dt/battery-twin",
                "basic_ingest_rule": args.basic_ingest_rule or "",
                "basic_ingest_health_rule": args.basic_ingest_health_rule or "",
            }
            pem = None
        else:
            outputs = read_terraform_outputs(args.terraform_dir, args.tf_output)
            uplink, pem = uplink_from_outputs(outputs, args.rig)
        if pem is None:
            if not cp.exists():
                raise ProvisionError(
                    f"no certificate for {args.rig} yet: put its CSR ({csr_path(args.dir, args.rig)}) "
                    "in the example's csr/ folder and terraform apply"
                )
            pem = cp.read_bytes()
        cert = check_cert_matches_key(pem, kp)
        _write_public(cp, pem)
        ca = args.dir / (args.ca.name if args.ca else AMAZON_ROOT_CA)
        _write_public(ca, args.ca.read_bytes() if args.ca else packaged_ca())
        uplink.update({"cert": cp.resolve(), "key": kp.resolve(), "ca": ca.resolve()})
        if args.port:
            uplink["port"] = args.port
        updated = write_config(args.out, args.rig, uplink, args.store)
    except (ProvisionError, OSError) as exc:
        print(f"battery-twin provision config: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(
        f"certificate {cp} (subject {cert.subject.rfc4514_string()}, valid until "
        f"{cert.not_valid_after_utc:%Y-%m-%d}) matches {kp}"
    )
    print(
        f"{'updated' if updated else 'wrote'} {args.out}: rig {args.rig}, endpoint {uplink['endpoint']}, topics "
        f"{uplink['topic_prefix']}/{args.rig}/..., basic ingest "
        f"{uplink['basic_ingest_rule'] or 'off'}" + (f" (previous version: {args.out}.bak)" if updated else "")
    )
    return 0
