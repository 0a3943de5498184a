"""HTTPS for the dashboard: the certificate and key named by ``dashboard.tls_cert`` / ``dashboard.tls_key``.

Checked before use, as the uplink's files are: the key must not be readable by anyone but the service user
(mode 0600, as ``doctor`` demands of the device key), and the pair must load. TLS 1.2 at least.
"""

from __future__ import annotations

import ssl
import stat
from pathlib import Path


class TlsSetupError(Exception):
    """The dashboard's certificate or key cannot be used; the message says what to fix."""


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    try:
        st = key.stat()
    except OSError as exc:
        raise TlsSetupError(f"dashboard.tls_key: cannot read {key}: {exc.strerror or exc}") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise TlsSetupError(
            f"dashboard.tls_key: {key} has mode {mode:04o}: other users can read the private key "
            f"(chmod 600 {key}, owned by the service user)"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            raise TlsSetupError(
                f"dashboard.tls_cert / tls_key: {cert} and {key} are not a PEM certificate and its private key "
                f"({exc.reason or exc})"
            ) from None
        raise TlsSetupError(f"dashboard.tls_cert: cannot read {exc.filename or cert}: {exc.strerror or exc}") from None
    return ctx
