"""The webhook address rules: only public unicast addresses, in whatever form, and the guard at connect."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from homework_reminder.config import ReminderSettings
from homework_reminder.egress import AddressRefused, EgressGuard, GuardedTransport, refusal

UNREACHABLE = {"kafka_bootstrap_servers": "127.0.0.1:9", "mongodb_uri": "mongodb://127.0.0.1:9/"}

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.9.9.9", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.7", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # AWS, GCP and Azure instance metadata
    ("fe80::1", "link-local"),
    ("fd00:ec2::254", "private or unique-local"),  # AWS's IPv6 metadata address (unique-local)
    ("fc00::1", "private or unique-local"),
    ("fec0::1", "site-local"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", ""),
    ("100.64.0.1", "not globally routable"),  # carrier-grade NAT, shared address space
    ("192.0.2.1", ""),  # documentation range
    ("198.18.0.1", ""),  # benchmarking range
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.1.2.3", "private"),
    ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ("::10.1.2.3", "private"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
]
ALLOWED = ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_addresses_outside_the_public_internet_are_refused_with_the_reason(address: str, why: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None, address
    assert why in reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_unicast_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def resolving_to(*addresses: str) -> EgressGuard:
    async def resolver(host: str, port: int) -> list[str]:
        return list(addresses)

    return EgressGuard(allow_private=False, resolver=resolver)


async def test_a_name_is_refused_when_any_of_its_addresses_is_private() -> None:
    with pytest.raises(AddressRefused, match=r"10\.0\.0\.1, which is private"):
        await resolving_to("93.184.215.14", "10.0.0.1").checked_addresses("hooks.example.org", 443)
    assert await resolving_to("93.184.215.14").checked_addresses("hooks.example.org", 443) == ["93.184.215.14"]


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(AddressRefused, match="does not resolve"):
        await EgressGuard(allow_private=False, resolver=failing).checked_addresses("nowhere.invalid", 443)
    with pytest.raises(AddressRefused, match="does not resolve"):
        await resolving_to().checked_addresses("empty.example.org", 443)


async def test_an_address_literal_is_checked_without_resolving() -> None:
    guard = resolving_to("93.184.215.14")
    with pytest.raises(AddressRefused, match="loopback"):
        await guard.checked_addresses("[::ffff:127.0.0.1]", 443)
    assert await EgressGuard(allow_private=True).checked_addresses("127.0.0.1", 80) == ["127.0.0.1"]


async def test_the_guarded_transport_refuses_to_connect_to_loopback() -> None:
    """Also proves the guard is wired into httpx's pool: without it the request would reach a closed port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        async with httpx.AsyncClient(transport=GuardedTransport(EgressGuard(allow_private=False))) as http:
            with pytest.raises(AddressRefused, match="loopback"):
                await http.post(f"http://127.0.0.1:{port}/hook", content=b"{}")
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing ever connected


async def test_the_guarded_transport_connects_to_the_checked_address_not_a_second_answer() -> None:
    """The name is resolved once per connect: a resolver answering differently the second time is never asked."""
    answers = [["127.0.0.1"], ["10.9.9.9"]]
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers.pop(0)

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        guard = EgressGuard(allow_private=True, resolver=rebinding)
        async with httpx.AsyncClient(transport=GuardedTransport(guard), timeout=0.5) as http:
            with pytest.raises(httpx.ReadTimeout):  # connected to 127.0.0.1, which never answers
                await http.get(f"http://receiver.test:{port}/")
        listener.settimeout(2)
        conn, _ = listener.accept()
        conn.close()
    assert asked == ["receiver.test"]


def test_private_network_webhooks_are_refused_outside_development() -> None:
    production: dict[str, Any] = {
        "environment": "production",
        "jwt_secret": "a-production-jwt-secret-of-40-characters!",
        "jwt_allow_hs256_in_production": True,
        "allow_insecure_transport": True,  # the local broker and server speak plain text
        "webhook_secret_keys": Fernet.generate_key().decode(),
        **UNREACHABLE,
    }
    ReminderSettings(**production)  # valid as it is: the refusal below is the webhook rule's
    with pytest.raises(ValueError, match="WEBHOOK_ALLOW_PRIVATE_NETWORKS"):
        ReminderSettings(webhook_allow_private_networks=True, **production)
    settings = ReminderSettings(environment="development", webhook_allow_private_networks=True, **UNREACHABLE)
    assert settings.webhook_allow_private_networks
