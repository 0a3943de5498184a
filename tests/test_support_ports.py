"""The tests' port helper (tests/support/ports.py) does what the suite relies on: a reserved port is not handed
to anyone else, yet a server with SO_REUSEADDR (mosquitto, moto) can bind it; a server on port 0 reports its own."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from tests.support.ports import bound_port, reserve_port


def test_a_reserved_port_is_not_handed_out_but_a_reusing_server_can_bind_it() -> None:
    port = reserve_port()
    with socket.socket() as plain, pytest.raises(OSError) as err:
        plain.bind(("127.0.0.1", port))  # nobody else takes it by accident...
    assert err.value.errno == errno.EADDRINUSE
    others = [socket.socket() for _ in range(500)]
    try:
        for s in others:
            s.bind(("127.0.0.1", 0))
        assert port not in {s.getsockname()[1] for s in others}  # ...nor is it given to a bind(port 0)
    finally:
        for s in others:
            s.close()
    with socket.socket() as server:  # ...but the server the test starts can have it
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_nothing_listens_on_a_reserved_port() -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", reserve_port()), timeout=5)


def test_bound_port_reads_what_port_0_got() -> None:
    async def main() -> tuple[int, int]:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        async with server:
            port = bound_port(server)
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return port, server.sockets[0].getsockname()[1]

    port, actual = asyncio.run(main())
    assert port == actual > 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        assert bound_port(s) == s.getsockname()[1]
