"""Doctor checks for the uplink: certificate, key, CA bundle, and a real TLS handshake with the endpoint.

The handshake uses Python's ssl (OpenSSL) with the same three files the agent hands awsiotsdk. With TLS 1.3 a
server rejects a client certificate only *after* the client's handshake finished, so the probe then waits briefly
for the server's alert; silence means the broker is waiting for MQTT CONNECT, i.e. the certificate was accepted.
No MQTT CONNECT is sent: with the rig's client id it would disconnect a running agent (IoT Core allows one
connection per client id).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.config import UplinkConfig
from agent.doctor import fail, ok, run_with_timeout, warn
from drivers.base import Check

CONNECT_TIMEOUT_S = 5.0
DNS_TIMEOUT_S = 10.0
ALERT_WAIT_S = 2.0  # how long to wait for a post-handshake alert (TLS 1.3 client-certificate rejection)
EXPIRY_WARN_DAYS = 30
IOT_CORE_ALPN = "x-amzn-mqtt-ca"  # MQTT over TLS on port 443 to IoT Core needs this ALPN protocol


def _read(name: str, path: Path, what: str) -> tuple[bytes | None, Check | None]:
    try:
        return path.read_bytes(), None
    except FileNotFoundError:
        return None, fail(
            name,
            f"{what} {path} does not exist",
            f"copy the {what} there or correct uplink {name.split('.')[-1]} in the config",
        )
    except PermissionError:
        return None, fail(
            name,
            f"{what} {path} is not readable by uid {os.geteuid()}",
            f"run doctor as root or as the service user (sudo -u battery-twin battery-twin doctor); "
            f"the service user must be able to read {path}",
        )
    except OSError as exc:
        return None, fail(name, f"cannot read {what} {path}: {exc.strerror}", "check the path and the disk")


def _utc(c: x509.Certificate, attr: str) -> dt.datetime:
    v: dt.datetime | None = getattr(c, attr + "_utc", None)
    if v is None:
        naive: dt.datetime = getattr(c, attr)
        v = naive.replace(tzinfo=dt.UTC)
    return v


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string()


def check_cert(path: Path, now: dt.datetime) -> tuple[list[Check], x509.Certificate | None]:
    data, problem = _read("tls.cert", path, "certificate")
    if problem:
        return [problem], None
    try:
        cert = x509.load_pem_x509_certificates(data)[0]  # type: ignore[arg-type]
    except ValueError:
        return [
            fail(
                "tls.cert",
                f"{path} is not a PEM certificate",
                "use the device certificate as PEM "
                "(-----BEGIN CERTIFICATE-----), e.g. the *-certificate.pem.crt IoT Core gave you",
            )
        ], None
    start, end = _utc(cert, "not_valid_before"), _utc(cert, "not_valid_after")
    days = (end - now).total_seconds() / 86400
    subject = f"CN={_cn(cert.subject)}"
    if now < start:
        return [
            fail(
                "tls.cert",
                f"{path} ({subject}) is not valid before {start:%Y-%m-%d %H:%M} UTC; the clock "
                f"says {now:%Y-%m-%d %H:%M}",
                "set the clock (timedatectl set-ntp true) or use a certificate that is already valid",
            )
        ], cert
    if days < 0:
        return [
            fail(
                "tls.cert",
                f"{path} ({subject}) expired on {end:%Y-%m-%d} ({-days:.0f} days ago)",
                "issue a new device certificate, register and activate it, and replace the file",
            )
        ], cert
    if days < EXPIRY_WARN_DAYS:
        return [
            warn(
                "tls.cert",
                f"{path} ({subject}) expires on {end:%Y-%m-%d}: {days:.0f} days left",
                "rotate the device certificate before it expires",
            )
        ], cert
    return [ok("tls.cert", f"{path} ({subject}) valid until {end:%Y-%m-%d}: {days:.0f} days left")], cert


def check_key(path: Path, cert: x509.Certificate | None) -> tuple[list[Check], bool]:
    """Mode and ownership of the key and its directory, and whether it belongs to the certificate."""
    data, problem = _read("tls.key", path, "private key")
    if problem:
        return [problem], False
    out: list[Check] = []
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        out.append(
            fail(
                "tls.key.mode",
                f"{path} has mode {mode:04o}: other users can read the private key",
                f"chmod 600 {path} && chown battery-twin:battery-twin {path}",
            )
        )
    else:
        out.append(ok("tls.key.mode", f"{path} has mode {mode:04o}, owner uid {st.st_uid}"))
    dmode = stat.S_IMODE(path.parent.stat().st_mode)
    if dmode & 0o077:
        out.append(
            warn(
                "tls.key.dir",
                f"{path.parent} has mode {dmode:04o}: others can list it",
                f"chmod 700 {path.parent} (install.sh keeps keys in /etc/battery-twin/certs, mode 0700)",
            )
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)  # type: ignore[arg-type]
    except TypeError:
        out.append(
            fail(
                "tls.key",
                f"{path} is encrypted with a passphrase; the agent cannot unlock it",
                f"store it unencrypted with mode 0600 (openssl pkey -in {path} -out NEW.key)",
            )
        )
        return out, False
    except ValueError:
        out.append(
            fail(
                "tls.key",
                f"{path} is not a PEM private key",
                "use the device's private key as PEM "
                "(-----BEGIN ... PRIVATE KEY-----), e.g. the *-private.pem.key IoT Core gave you",
            )
        )
        return out, False
    if cert is None:
        return out, False
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        out.append(
            fail(
                "tls.key.match",
                f"{path} is not the private key of the certificate (CN={_cn(cert.subject)})",
                "pair uplink.cert with the key it was issued for (both come "
                "from the same create-keys-and-certificate / CSR)",
            )
        )
        return out, False
    out.append(ok("tls.key.match", "the private key matches the certificate"))
    return out, True


def check_ca(path: Path, now: dt.datetime) -> tuple[list[Check], bool]:
    data, problem = _read("tls.ca", path, "CA bundle")
    if problem:
        return [problem], False
    try:
        cas = x509.load_pem_x509_certificates(data)  # type: ignore[arg-type]
        ssl.create_default_context(cafile=str(path))
    except (ValueError, ssl.SSLError):
        return [
            fail(
                "tls.ca",
                f"{path} is not a PEM CA bundle",
                "use the CA that signed the endpoint's certificate as PEM (for IoT Core: AmazonRootCA1.pem)",
            )
        ], False
    valid = [c for c in cas if _utc(c, "not_valid_before") <= now <= _utc(c, "not_valid_after")]
    if not valid:
        return [
            fail(
                "tls.ca",
                f"{path}: every certificate in it is expired or not yet valid",
                "replace the CA bundle (for IoT Core: AmazonRootCA1.pem)",
            )
        ], False
    return [ok("tls.ca", f"{path}: {len(cas)} certificate(s), first CN={_cn(cas[0].subject)}")], True


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(i[4][0]) for i in infos})


def check_dns(cfg: UplinkConfig) -> tuple[list[Check], bool]:
    try:
        addrs = run_with_timeout(lambda: resolve(cfg.endpoint, cfg.port), DNS_TIMEOUT_S)
    except TimeoutError:
        return [
            fail(
                "endpoint.dns",
                f"resolving {cfg.endpoint} took longer than {DNS_TIMEOUT_S:.0f} s",
                "check the DNS servers (/etc/resolv.conf, resolvectl status)",
            )
        ], False
    except (socket.gaierror, UnicodeError) as exc:
        return [
            fail(
                "endpoint.dns",
                f"{cfg.endpoint} does not resolve ({exc})",
                "check uplink.endpoint (aws iot describe-endpoint --endpoint-type iot:Data-ATS) and the "
                "DNS setup (/etc/resolv.conf, resolvectl status)",
            )
        ], False
    return [ok("endpoint.dns", f"{cfg.endpoint} resolves to {', '.join(addrs[:4])}")], True


def tls_probe(cfg: UplinkConfig) -> Check:
    """Connect, handshake with the client certificate, then wait briefly for a rejection alert."""
    where = f"{cfg.endpoint}:{cfg.port}"
    name = "endpoint.tls"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(cfg.ca))
    ctx.load_cert_chain(str(cfg.cert), str(cfg.key))
    if cfg.port == 443:
        ctx.set_alpn_protocols([IOT_CORE_ALPN])
    try:
        raw = socket.create_connection((cfg.endpoint, cfg.port), timeout=CONNECT_TIMEOUT_S)
    except ConnectionRefusedError:
        return fail(
            name, f"{where} refused the connection", "check uplink.endpoint and uplink.port (IoT Core: 8883, or 443)"
        )
    except TimeoutError:
        return fail(
            name,
            f"no answer from {where} within {CONNECT_TIMEOUT_S:.0f} s",
            "outbound TCP to that "
            "port may be blocked by a firewall; IoT Core also accepts MQTT on 443 (set uplink.port = 443)",
        )
    except OSError as exc:
        return fail(name, f"cannot connect to {where}: {exc.strerror or exc}", "check the network route")
    with raw:
        try:
            s = ctx.wrap_socket(raw, server_hostname=cfg.endpoint)
        except ssl.SSLCertVerificationError as exc:
            return fail(
                name,
                f"the certificate of {where} does not verify against uplink.ca {cfg.ca} ({exc.verify_message})",
                "uplink.ca must hold the CA that signed the endpoint's "
                "certificate (for IoT Core: AmazonRootCA1.pem); check uplink.endpoint too",
            )
        except ssl.SSLError as exc:
            return _rejected(name, where, exc)
        except TimeoutError:
            return fail(name, f"TLS handshake with {where} timed out", "is this a TLS (MQTT over TLS) port?")
        except OSError as exc:
            return fail(
                name,
                f"the connection to {where} broke during the TLS handshake ({exc})",
                "the endpoint rejected the client: check the certificate is registered and active",
            )
        with s:
            version = s.version()
            s.settimeout(ALERT_WAIT_S)
            try:
                data = s.recv(1)
            except TimeoutError:
                data = None  # the broker waits for MQTT CONNECT: the client certificate was accepted
            except ssl.SSLError as exc:
                return _rejected(name, where, exc)
            except OSError as exc:
                return fail(
                    name,
                    f"{where} dropped the connection right after the handshake ({exc})",
                    "the client certificate was probably rejected: check it is registered and active",
                )
            if data == b"":
                return fail(
                    name,
                    f"{where} closed the connection right after the handshake",
                    "the client certificate was probably rejected: check it is registered, active, and "
                    "that its CA is registered with the endpoint",
                )
    return ok(name, f"{version} handshake with {where} using the client certificate: accepted")


def _rejected(name: str, where: str, exc: ssl.SSLError) -> Check:
    reason = (exc.reason or str(exc)).lower().replace("_", " ")
    if "certificate" in reason or "unknown ca" in reason or "handshake failure" in reason:
        return fail(
            name,
            f"{where} rejected the client certificate ({reason})",
            "register and activate the device certificate (and its CA) with the endpoint, attach a policy, "
            "and check it has not expired",
        )
    return fail(name, f"TLS with {where} failed ({reason})", "check the endpoint, port and the TLS files")


def check_uplink(cfg: UplinkConfig) -> list[Check]:
    now = dt.datetime.now(dt.UTC)
    assert cfg.cert is not None and cfg.key is not None and cfg.ca is not None  # the config model ensures it
    out, cert = check_cert(cfg.cert, now)
    key_checks, key_ok = check_key(cfg.key, cert)
    out += key_checks
    ca_checks, ca_ok = check_ca(cfg.ca, now)
    out += ca_checks
    dns_checks, dns_ok = check_dns(cfg)
    out += dns_checks
    if not (cert is not None and key_ok and ca_ok and dns_ok):
        out.append(fail("endpoint.tls", "handshake not tried: fix the checks above first", "see above"))
    else:
        out.append(tls_probe(cfg))
    return out
