"""An HTTPS server on loopback that stands in for S3 behind presigned URLs (GET a model, PUT a diagnostics bundle),
with the server certificate from the test PKI. ``presign`` turns the ``https://s3.<region>.amazonaws.com/<bucket>/
<key>`` of a job document's placeholder into a URL on this server, as IoT Jobs turns it into a presigned one.

Faults for the download tests, per path: ``truncate`` (announce the length, close half way), ``stream`` (no
Content-Length, and whatever bytes are served: an oversize file the client only notices while reading).
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.pki import Pki


class FileServer:
    def __init__(self, pki: Pki):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, str] = {}
        self.uploads: dict[str, tuple[str, bytes]] = {}  # path -> (content type, body)
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                server.requests.append(("GET", self.path))
                body = server.files.get(path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                fault = server.faults.get(path)
                self.send_response(200)
                if fault == "stream":
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body)
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault == "truncate":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

            def do_PUT(self) -> None:
                path = urlsplit(self.path).path
                server.requests.append(("PUT", self.path))
                n = int(self.headers.get("Content-Length", "0"))
                server.uploads[path] = (self.headers.get("Content-Type", ""), self.rfile.read(n))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        cert, key = pki.issue("localhost", server=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.ca: Path = pki.ca_cert
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="https-files")

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def presign(self, s3_url: str) -> str:
        """``https://s3.<region>.amazonaws.com/<bucket>/<key>`` -> this server, with a query as a presigned URL has."""
        return self.url(urlsplit(s3_url).path) + "?X-Amz-Expires=3600&X-Amz-Signature=stand-in"
