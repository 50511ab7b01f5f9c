"""The client's IP address, believing ``X-Forwarded-For`` only as far as trusted proxies vouch.

Each proxy appends the address it received the request from, so the list reads left to right
from the client to the last proxy, and everything left of the first proxy we trust is whatever
the client chose to send. Walking from the right (starting at the direct peer) past trusted
proxies, the first untrusted address is the client: the right-most address nobody we trust
could have forged. A peer we do not trust means the header is ignored altogether.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from whalli.config import split_csv

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDED_FOR = b"x-forwarded-for"
UNKNOWN = "unknown"


def parse_trusted_proxies(value: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 2001:db8::/32, 127.0.0.1"`` -> networks (``ValueError`` on a bad one)."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in split_csv(value))


def client_ip(scope: Mapping[str, Any], trusted: Sequence[IPNetwork]) -> str:
    """The client address of an ASGI HTTP scope, in canonical form.

    Falls back to the peer as given when it is not an IP address (e.g. a unix socket), and to
    the left-most address we could vouch for when every hop is a trusted proxy or the next
    entry is not an address.
    """
    client = scope.get("client")
    peer_host = str(client[0]) if client else ""
    peer = parse_address(peer_host)
    if peer is None:
        return peer_host or UNKNOWN
    if not _is_trusted(peer, trusted):
        return str(peer)
    vouched = peer
    for entry in reversed(forwarded_for(scope.get("headers", ()))):
        hop = parse_address(entry)
        if hop is None:
            break
        if not _is_trusted(hop, trusted):
            return str(hop)
        vouched = hop
    return str(vouched)


def forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every ``X-Forwarded-For`` entry, in order; repeated headers read as one list."""
    entries: list[str] = []
    for name, value in headers:
        if name.lower() == FORWARDED_FOR:
            entries.extend(part.strip() for part in value.decode("latin-1").split(","))
    return entries


def parse_address(text: str) -> IPAddress | None:
    """An address from ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1`` or ``[2001:db8::1]:80``;
    IPv4-mapped IPv6 reads as IPv4. ``None`` when it is not an address."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port; an IPv6 address has at least two colons
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)
