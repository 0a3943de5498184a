"""HTTPS transfers for jobs: a bounded, hashed download into the state directory and an upload to a presigned URL.

Only ``https://`` URLs to a host in ``[remote] hosts``. A download is refused as soon as the server announces or
sends more bytes than the job says (an oversize file never lands whole), and checked for length and SHA-256 at the
end (truncated or swapped). Blocking (urllib, no new dependency): callers run these in a thread.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from agent.remote.config import RemoteConfig
from agent.remote.signing import VerifyError

CHUNK = 64 * 1024


def _context(cfg: RemoteConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cfg.ca) if cfg.ca else None)


def _check_url(url: str, cfg: RemoteConfig) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise VerifyError("bad_url", f"only https URLs are used, not {parts.scheme or 'none'}://")
    if not parts.hostname or not cfg.host_allowed(parts.hostname):
        raise VerifyError("bad_url", f"host {parts.hostname!r} is not in remote.hosts ({', '.join(cfg.hosts)})")


def where(url: str) -> str:
    """A URL without its query (presigned URLs carry credentials there): for logs and job status."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}{p.path}"


def download(url: str, dest: Path, size: int, sha256: str, cfg: RemoteConfig) -> None:
    """``url`` into ``dest`` (0600, fsynced) if it is exactly ``size`` bytes with that SHA-256; VerifyError
    (``oversize``, ``truncated``, ``hash_mismatch``, ``download_failed``, ``bad_url``) otherwise, ``dest`` removed."""
    _check_url(url, cfg)
    deadline = time.monotonic() + cfg.download_timeout_s
    digest = hashlib.sha256()
    got = 0
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "battery-twin"})
        with urllib.request.urlopen(req, timeout=min(60.0, cfg.download_timeout_s), context=_context(cfg)) as resp:
            announced = resp.headers.get("Content-Length")
            if announced is not None and announced.isdigit() and int(announced) > size:
                raise VerifyError("oversize", f"{where(url)} is {announced} bytes, the job says {size}")
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := resp.read(CHUNK):
                    got += len(chunk)
                    if got > size:
                        raise VerifyError("oversize", f"{where(url)} sent more than the {size} bytes the job says")
                    if time.monotonic() > deadline:
                        raise VerifyError("download_failed", f"{where(url)}: slower than {cfg.download_timeout_s} s")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
    except VerifyError:
        dest.unlink(missing_ok=True)
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:  # HTTP errors, TLS, reset, short read, timeout
        dest.unlink(missing_ok=True)
        if got and got < size:
            raise VerifyError(
                "truncated", f"{where(url)}: connection ended after {got} of {size} bytes ({exc})"
            ) from None
        raise VerifyError("download_failed", f"{where(url)}: {exc}") from None
    if got < size:
        dest.unlink(missing_ok=True)
        raise VerifyError("truncated", f"{where(url)}: {got} of {size} bytes")
    if digest.hexdigest() != sha256:
        dest.unlink(missing_ok=True)
        raise VerifyError(
            "hash_mismatch", f"{where(url)}: sha256 {digest.hexdigest()[:16]}..., the job says {sha256[:16]}..."
        )


def upload(url: str, data: bytes, content_type: str, cfg: RemoteConfig) -> None:
    """PUT ``data`` to a presigned URL; VerifyError on anything but a 2xx answer."""
    _check_url(url, cfg)
    req = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=min(120.0, cfg.download_timeout_s), context=_context(cfg)) as resp:
            status = int(resp.status)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise VerifyError("upload_failed", f"{where(url)}: {exc}") from None
    if not 200 <= status < 300:
        raise VerifyError("upload_failed", f"{where(url)}: HTTP {status}")
