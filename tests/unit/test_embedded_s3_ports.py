"""The embedded S3 gives each component a gRPC port of its HTTP port + 10000.

``weed mini``'s plugin worker dials the admin server at admin + 10000 whatever
``-admin.port.grpc`` says. With another gRPC port it sent HTTP/2 prefaces every 5 s to whatever
listened there, once a test's fake AI provider, which recorded a ``PRI *`` request.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from whalli.adapters.embedded.process import port_is_free
from whalli.adapters.embedded.s3 import _port_pair


@contextmanager
def _listening(port: int = 0) -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_pair_is_two_free_ports_ten_thousand_apart() -> None:
    port = _port_pair(None, set())
    assert port + 10000 <= 65535
    assert port_is_free(port)
    assert port_is_free(port + 10000)


def test_a_wanted_port_is_kept_when_its_pair_is_free() -> None:
    wanted = _port_pair(None, set())
    assert _port_pair(wanted, set()) == wanted


def test_a_wanted_port_whose_grpc_port_is_busy_is_not_kept() -> None:
    wanted = _port_pair(None, set())
    with _listening(wanted + 10000):
        assert _port_pair(wanted, set()) != wanted


def test_a_wanted_port_too_high_for_a_pair_is_not_kept() -> None:
    assert _port_pair(60000, set()) != 60000


def test_ports_already_given_to_another_component_are_not_reused() -> None:
    first = _port_pair(None, set())
    taken = {first, first + 10000}
    assert _port_pair(first, taken) not in (first, first - 10000)
