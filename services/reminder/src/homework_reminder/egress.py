"""Webhooks reach only the public internet: the address rules, and an HTTP transport that enforces them at connect.

A practice chooses its webhook URL, so without a guard it could point the reminder at anything the
pod can reach: the cloud metadata service (169.254.169.254), MongoDB, Kafka, another service's
admin port. Two checks close that (OWASP's SSRF prevention cheat sheet, "application layer"):

* when the URL is set, its host is resolved and every address must be public unicast (``PUT`` answers
  422 naming ``url`` otherwise);
* at every delivery's connect the host is resolved again, every address checked, and the socket
  connects to one of the checked addresses, never to a name resolved a second time. A DNS answer
  that changes between the two checks (rebinding) is caught at connect.

Public unicast means ``ipaddress``'s ``is_global`` and none of its special ranges, after unwrapping
the IPv6 forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, compatible ``::a.b.c.d``,
NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo). ``WEBHOOK_ALLOW_PRIVATE_NETWORKS=true``
(development only) lifts the address rule, for a receiver on the developer's own machine.

The network policy ``reminder-webhooks`` (deploy/k8s) is the second layer: it drops egress to
private ranges even if this code had a bug.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Awaitable, Callable

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves ``(host, port)`` to address strings; the system resolver by default, a fake in tests."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class AddressRefused(Exception):
    """A webhook host resolved to an address outside the public internet (or did not resolve)."""


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as the operating system's resolver answers (IPv4 and IPv6)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries in one of the translation forms, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
        return ipaddress.IPv4Address(packed)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is one."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            reason = refusal(inner)
            return f"carries {inner}, which is {reason}" if reason else None
    checks: list[tuple[bool, str]] = [
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local (this includes cloud metadata services)"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "site-local"),
        (address.is_reserved, "reserved"),
        (address.is_private, "private or unique-local"),
        (not address.is_global, "not globally routable"),
    ]
    return next((reason for matched, reason in checks if matched), None)


class EgressGuard:
    """Resolves a webhook host and checks each address; ``allow_private`` lifts the rule (development)."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        self.allow_private = allow_private
        self.resolve = resolver

    async def checked_addresses(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``, all of them allowed; ``AddressRefused`` if any is not (or none exist)."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = await self.resolve(host, port)
            except OSError as exc:
                raise AddressRefused(f"{host} does not resolve ({exc})") from exc
        if not addresses:
            raise AddressRefused(f"{host} does not resolve")
        if not self.allow_private:
            for text in addresses:
                reason = refusal(ipaddress.ip_address(text.split("%", 1)[0]))
                if reason:
                    raise AddressRefused(f"{host} resolves to {text}, which is {reason}")
        return addresses


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the guard checked (the name is resolved once)."""

    def __init__(self, guard: EgressGuard) -> None:
        self.guard = guard
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.guard.checked_addresses(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        last: Exception | None = None
        for address in addresses:  # connect to a checked address; TLS still verifies and sends SNI for ``host``
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("webhooks are never delivered to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport over a connection pool whose connects go through the guard.

    httpx has no public parameter for httpcore's ``network_backend``, so the pool httpx built is
    replaced with an equal one that has it (the same TLS context and limits). The unit test
    ``test_the_guarded_transport_refuses_to_connect_to_loopback`` fails if an httpx upgrade changes this.
    """

    def __init__(self, guard: EgressGuard, *, limits: httpx.Limits = DEFAULT_LIMITS) -> None:
        super().__init__(trust_env=False, limits=limits)  # no proxy from the environment: it would connect instead
        ssl_context = httpx.create_ssl_context(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(guard),
        )
