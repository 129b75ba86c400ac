"""The client's address, for rate limits and the stored (hashed) IP.

X-Forwarded-For is believed only when the request arrives from a trusted proxy: anyone
can send the header, and a forged one would walk past every per-address limit. Behind
trusted proxies the client is the right-most address that is not itself a trusted proxy:
each proxy appends the address it saw, so everything left of the first untrusted hop is
the client's own to invent.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from aiohttp import web

from countersign_core.settings import IPNetwork
from countersign_domain.errors import ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A partner signing server to server names its signer's address here; read only with a
# valid partner key (anyone else could name any address, and walk past the limits).
SIGNER_IP_HEADER = "Countersign-Signer-IP"


@functools.lru_cache(maxsize=4096)  # the proxy's own address comes with every request
def parse_address(text: str | None) -> IPAddress | None:
    """An address as proxies write it (``192.0.2.1``, ``2001:db8::1``, with or without a
    port), IPv4-mapped IPv6 as IPv4; None if it is not one."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # 192.0.2.1:443
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in proxies)


def client_address(request: web.Request, trusted_proxies: Sequence[IPNetwork]) -> IPAddress | None:
    peer = parse_address(request.remote)
    if peer is None or not _trusted(peer, trusted_proxies):
        return peer
    hops = [
        hop for header in request.headers.getall("X-Forwarded-For", ()) for hop in header.split(",")
    ]
    client = peer
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break  # garbage: nothing left of it can be believed
        client = address
        if not _trusted(address, trusted_proxies):
            break
    return client


def signer_address(request: web.Request) -> IPAddress | None:
    """The address a partner's request names for its signer (``Countersign-Signer-IP``):
    what the per-address limits count and the stored IP hash hashes. None without the
    header; a value that is not an address is refused (422), not ignored."""
    value = request.headers.get(SIGNER_IP_HEADER)
    if value is None:
        return None
    address = parse_address(value)
    if address is None:
        raise ValidationFailed(fields={SIGNER_IP_HEADER: ["Not an IP address."]})
    return address


def limit_subject(address: IPAddress) -> str:
    """What a per-address limit counts: the address, or its /64 for IPv6 (one subscriber
    line gets a whole /64, so single IPv6 addresses cost a bot nothing)."""
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
