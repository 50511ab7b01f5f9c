from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.entrypoints.http.client_ip import (
    client_ip,
    forwarded_for,
    parse_address,
    parse_trusted_proxies,
)

TRUSTED = parse_trusted_proxies("10.0.0.0/8, 2001:db8:ffff::/48")

trusted_v4 = st.ip_addresses(network="10.0.0.0/8")
trusted_v6 = st.ip_addresses(network="2001:db8:ffff::/48")
trusted_hops = st.one_of(trusted_v4, trusted_v6).map(str)
# Public documentation ranges: never inside TRUSTED.
untrusted = st.one_of(
    st.ip_addresses(network="203.0.113.0/24"), st.ip_addresses(network="2001:db8:1::/48")
).map(str)
# Whatever a client may write into the header itself.
junk = st.one_of(
    untrusted,
    trusted_hops,
    st.text(alphabet="0123456789abcdef.:[]% unknow-", max_size=20),
)


def scope(peer: str | None, *xff: str) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 5000) if peer is not None else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in xff],
    }


@given(peer=untrusted, header=st.lists(junk, max_size=6))
def test_the_header_is_ignored_when_the_peer_is_not_a_trusted_proxy(
    peer: str, header: list[str]
) -> None:
    assert client_ip(scope(peer, ", ".join(header)), TRUSTED) == peer


@given(
    spoofed=st.lists(junk, max_size=6),
    client=untrusted,
    proxies=st.lists(trusted_hops, max_size=4),
    peer=trusted_hops,
)
def test_behind_trusted_proxies_the_right_most_untrusted_address_is_the_client(
    spoofed: list[str], client: str, proxies: list[str], peer: str
) -> None:
    header = ", ".join([*spoofed, client, *proxies])

    assert client_ip(scope(peer, header), TRUSTED) == client


@given(spoofed=st.lists(junk, max_size=6), client=untrusted, peer=trusted_hops)
def test_repeated_headers_read_as_one_list(spoofed: list[str], client: str, peer: str) -> None:
    one = scope(peer, ", ".join([*spoofed, client]))
    split = scope(peer, *[*spoofed, client]) if spoofed else one

    assert client_ip(split, TRUSTED) == client_ip(one, TRUSTED) == client


@given(hops=st.lists(trusted_hops, min_size=1, max_size=4), peer=trusted_hops)
def test_a_chain_of_trusted_proxies_only_yields_its_left_most_address(
    hops: list[str], peer: str
) -> None:
    assert client_ip(scope(peer, ", ".join(hops)), TRUSTED) == hops[0]


@given(peer=trusted_hops, header=st.lists(junk, max_size=6))
def test_the_answer_is_always_the_peer_or_an_address_from_the_header(
    peer: str, header: list[str]
) -> None:
    answer = client_ip(scope(peer, ", ".join(header)), TRUSTED)

    seen = {str(a) for a in (parse_address(e) for e in [peer, *header]) if a is not None}
    assert answer in seen


def test_a_trusted_peer_without_the_header_is_the_client() -> None:
    assert client_ip(scope("10.1.2.3"), TRUSTED) == "10.1.2.3"


def test_a_garbage_hop_stops_the_walk_at_the_last_address_vouched_for() -> None:
    assert client_ip(scope("10.0.0.1", "203.0.113.9, bogus, 10.0.0.2"), TRUSTED) == "10.0.0.2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        (" 203.0.113.9:8443 ", "203.0.113.9"),
        ("2001:db8:1::9", "2001:db8:1::9"),
        ("[2001:db8:1::9]:443", "2001:db8:1::9"),
        ("[2001:db8:1::9]", "2001:db8:1::9"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("unknown", None),
        ("", None),
        ("[2001:db8::1", None),
    ],
)
def test_addresses_are_read_with_or_without_a_port(text: str, expected: str | None) -> None:
    parsed = parse_address(text)
    assert (str(parsed) if parsed is not None else None) == expected


def test_a_peer_that_is_not_an_address_is_returned_as_is() -> None:
    assert client_ip(scope("testclient", "203.0.113.9"), TRUSTED) == "testclient"
    assert client_ip(scope(None), TRUSTED) == "unknown"


def test_an_ipv4_mapped_peer_matches_an_ipv4_proxy_range() -> None:
    assert client_ip(scope("::ffff:10.0.0.1", "203.0.113.9"), TRUSTED) == "203.0.113.9"


def test_trusted_proxies_parse_from_a_comma_list() -> None:
    assert parse_trusted_proxies(" 10.0.0.0/8 ,, ::1 ") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert parse_trusted_proxies("") == ()
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        parse_trusted_proxies("10.0.0.0/33")


def test_forwarded_for_header_names_are_matched_case_insensitively() -> None:
    assert forwarded_for([(b"X-Forwarded-For", b"a, b"), (b"x-forwarded-for", b"c")]) == [
        "a",
        "b",
        "c",
    ]
