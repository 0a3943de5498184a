"""Loopback ports for the servers the tests start, without the race of "bind port 0, close it, hand the number on"
(between the close and the server's own bind, any process on the machine may take the port).

- A server the test runs itself binds port 0 and reports the port it got: ``bound_port(server)`` reads it from a
  socket, an ``asyncio.Server`` or anything with ``.sockets``; the Modbus emulator keeps the real port in
  ``emu.tcp``; ``battery-twin emulate modbus --tcp 127.0.0.1:0`` names it in its banner.
- A server that cannot report its port (mosquitto, moto's server) gets ``reserve_port()``: a port the kernel
  keeps in TIME_WAIT for a minute after a completed connection, so no other ``bind(port 0)`` on the machine is
  handed it, while a server that binds with SO_REUSEADDR (both do) can still take it. The same port serves as "a
  port where nothing listens" (a broker that is down, a device that is off).
"""

from __future__ import annotations

import socket
from typing import Any

LOOPBACK = "127.0.0.1"


def reserve_port(host: str = LOOPBACK) -> int:
    """A free port parked in TIME_WAIT on ``host`` (see the module docstring)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(1)
        port = int(listener.getsockname()[1])
        with socket.create_connection((host, port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the side that closes first holds TIME_WAIT: the one bound to ``port``
            client.recv(1)  # wait for the FIN, so the state is settled before we return
    return port


def bound_port(server: Any) -> int:
    """The port a listening server actually got (it was asked for port 0)."""
    if isinstance(server, socket.socket):
        return int(server.getsockname()[1])
    sockets = getattr(server, "sockets", None)
    if sockets:
        return int(sockets[0].getsockname()[1])
    raise TypeError(f"cannot tell which port {server!r} listens on")
