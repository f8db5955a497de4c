"""The SSRF guard of outbound webhooks: a URL an admin gives must not reach inside the server's network.

`check_url` reads the URL (http or https, a host, no credentials); `check_destination` resolves its host and
refuses any address that is loopback, link-local, private, shared (CGNAT), multicast, reserved or unspecified
— unless `allow_private` (WEBHOOK_ALLOW_PRIVATE=on: a self-hoster posting to an n8n on the LAN). Both run
when a webhook is saved (a 4xx) and the second again before every delivery, since DNS answers change.

Known limit: the HTTP client resolves the name again when it connects, so a DNS server that answers a
public address to the check and a private one a moment later (rebinding) is not stopped by this alone.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import trio

MAX_URL = 2000
RESOLVE_DEADLINE = 5.0  # seconds a host's name may take to resolve; slower is refused (a request never hangs on DNS)


class RefusedDestination(Exception):
    """The URL is malformed, or its host resolves where webhooks may not go."""


def check_url(url: str) -> tuple[str, int]:
    """(host, port) of a well-formed http(s) URL; RefusedDestination otherwise."""
    if len(url) > MAX_URL:
        raise RefusedDestination(f"is too long (at most {MAX_URL} characters)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise RefusedDestination(f"is not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedDestination("must be an http:// or https:// URL")
    if not parts.hostname:
        raise RefusedDestination("has no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedDestination("must not carry credentials (put them in a query parameter or path)")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
            or address.is_reserved or address.is_unspecified
            or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED))


_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT: not `is_private` in every Python


async def check_destination(url: str, *, allow_private: bool) -> None:
    """Raise RefusedDestination when `url` is malformed or (unless `allow_private`) any address of its
    host is not a public one; a name that does not resolve is refused too."""
    host, port = check_url(url)
    if allow_private:
        return
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            with trio.fail_after(RESOLVE_DEADLINE):
                infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise RefusedDestination(f"host {host!r} does not resolve ({error})") from None
        except trio.TooSlowError:
            raise RefusedDestination(f"host {host!r} did not resolve within {RESOLVE_DEADLINE:g}s") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        if forbidden(address):
            raise RefusedDestination(f"resolves to {address}, a loopback, link-local or private address "
                                     "(WEBHOOK_ALLOW_PRIVATE=on allows it)")
