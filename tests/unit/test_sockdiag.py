"""harness.host.sockdiag against this process's own namespace (sock_diag needs no root)."""

from __future__ import annotations

import socket

import pytest

from harness.host import sockdiag


def test_listening_ports_are_listed_and_connected_ones_are_not() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    diag = sockdiag.open_diag()
    try:
        found = sockdiag.tcp_listening(diag)
        assert port in found
        assert client.getsockname()[1] not in found
        listener.close()
        assert port not in sockdiag.tcp_listening(diag)  # asked again on the same socket
    finally:
        for sock in (diag, client, server, listener):
            sock.close()


def test_ipv6_listeners_count_too() -> None:
    try:
        listener = socket.socket(socket.AF_INET6)
        listener.bind(("::1", 0))
    except OSError:
        pytest.skip("IPv6 is off in this namespace")
    listener.listen(1)
    diag = sockdiag.open_diag()
    try:
        assert listener.getsockname()[1] in sockdiag.tcp_listening(diag)
    finally:
        diag.close()
        listener.close()
