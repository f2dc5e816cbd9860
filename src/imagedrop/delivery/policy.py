"""Which callback URLs imagedrop will call: operator rewrites, syntax, and address policy.

Everything but the name lookups (`check_destination`, `PolicyResolver`) is pure; the lookups
are injectable for tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from urllib.parse import SplitResult, urlsplit, urlunsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from imagedrop.errors import CallbackRefused, DeliveryTransient
from imagedrop.hostports import split_hostport

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Cloud metadata endpoints: a callback there would hand instance credentials to the caller.
# 169.254.0.0/16 and fe80::/10 are caught as link-local; these sit in other ranges.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata
        "168.63.129.16",  # Azure WireServer
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
CALLBACKS_SETTING = "IMAGEDROP_ALLOW_PRIVATE_CALLBACKS"
SUBSCRIBERS_SETTING = "IMAGEDROP_ALLOW_PRIVATE_SUBSCRIBERS"


def redact(url: str) -> str:
    """`scheme://host[:port]/path` with credentials, query and fragment removed."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def rewrite_targets(rules: Sequence[tuple[str, str]]) -> frozenset[str]:
    """The host names operator rules send callbacks to: `PolicyResolver`'s trusted hosts."""
    return frozenset(split_hostport(dst)[0] for _, dst in rules)


def apply_rewrites(url: str, rules: Sequence[tuple[str, str]]) -> tuple[str, bool]:
    """Apply the first operator rule whose `host[:port]` matches; return (url, matched).

    A rule without a port matches any port and keeps it unless the target names one.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return url, False
    for src, dst in rules:
        src_host, src_port = split_hostport(src)
        if src_host != host or (src_port is not None and src_port != port):
            continue
        dst_host, dst_port = split_hostport(dst)
        return urlunsplit(_with_host(parts, dst_host, dst_port or parts.port)), True
    return url, False


def _with_host(parts: SplitResult, host: str, port: int | None) -> SplitResult:
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    return parts._replace(netloc=netloc)


def check_syntax(url: str) -> None:
    """Refuse what can never be delivered: non-http(s) schemes, no host, a bad port."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise CallbackRefused(f"callback URL {redact(url)} is not a valid URL") from None
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        raise CallbackRefused(
            f"callback URL {redact(url)}: scheme must be http or https, "
            f"not {parts.scheme or 'missing'!r}"
        )
    if not parts.hostname:
        raise CallbackRefused(f"callback URL {redact(url)} has no host")
    if any(c.isspace() or ord(c) < 32 for c in url.strip()):
        raise CallbackRefused(f"callback URL {redact(url)} contains whitespace or controls")


def _unwrap(ip: IPAddress) -> IPAddress:
    """See through IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def address_problem(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why `ip` may not receive a callback, or None when it may."""
    ip = _unwrap(ip)
    if ip.is_link_local or ip in _METADATA:
        return "link-local/cloud-metadata"
    if allow_private:
        return None
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip in _CGNAT:
        return "shared (CGNAT)"
    if ip.is_private or not ip.is_global:
        return "private"
    return None


async def _getaddrinfo(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


async def _lookup(url: str, host: str, port: int, resolve: Resolver | None) -> Sequence[str]:
    try:
        addresses = await (resolve or _getaddrinfo)(host, port)
    except OSError as exc:  # a name that does not resolve now may resolve later
        raise DeliveryTransient(f"cannot resolve {redact(url)}: {exc.strerror or exc}") from exc
    if not addresses:
        raise DeliveryTransient(f"cannot resolve {redact(url)}: no addresses")
    return addresses


def _refusal(what: str, ip: IPAddress, problem: str, setting: str = CALLBACKS_SETTING
             ) -> CallbackRefused:
    hint = "" if problem.startswith("link-local") else (
        f"; set {setting}=1 to allow private targets")
    return CallbackRefused(f"{what} resolves to {problem} address {ip}, refused{hint}")


async def check_destination(
    url: str, *, allow_private: bool, rewritten: bool, resolve: Resolver | None = None,
    setting: str = CALLBACKS_SETTING,
) -> None:
    """Refuse a URL whose host resolves to any address policy forbids.

    Every address is checked, so a name with one public and one private record is refused.
    Raises `CallbackRefused` (permanent) or `DeliveryTransient` when the name does not resolve.
    """
    check_syntax(url)
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
    addresses = [host] if _is_ip(host) else await _lookup(url, host, port, resolve)
    # Operator rewrite rules point at hosts the operator chose (tunnels, sidecars), so they may
    # be private; metadata endpoints stay refused regardless.
    lenient = allow_private or rewritten
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%")[0])
        problem = address_problem(ip, allow_private=lenient)
        if problem:
            raise _refusal(f"callback URL {redact(url)}", ip, problem, setting)


class PolicyResolver(AbstractResolver):
    """Name lookups for the delivery connector that refuse any address the policy forbids.

    `check_destination` resolves a name, but aiohttp would resolve it again to connect: a
    hostile DNS name with TTL 0 could answer a public address to the first lookup and
    169.254.169.254 to the second (DNS rebinding). Checking here, on the one answer the
    connector uses, means the address checked is the address connected to. As in
    `check_destination`, one forbidden address refuses the whole name.

    `trusted_hosts` (the operator's rewrite targets) may resolve to private addresses; never
    to link-local or metadata ones. aiohttp does not call a resolver for IP literals, so
    `check_destination` remains the check for those.
    """

    def __init__(
        self, *, allow_private: bool, trusted_hosts: Iterable[str] = (),
        inner: AbstractResolver | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._trusted = frozenset(h.lower().rstrip(".") for h in trusted_hosts)
        # getaddrinfo in a thread: holds nothing to close, since the connector never closes
        # a resolver it was given.
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        lenient = self._allow_private or host.lower().rstrip(".") in self._trusted
        for result in results:
            ip = ipaddress.ip_address(result["host"].split("%")[0])
            problem = address_problem(ip, allow_private=lenient)
            if problem:
                # Not an OSError, so aiohttp passes it up unwrapped: a refusal, not a retry.
                raise _refusal(f"callback host {host}", ip, problem)
        return results

    async def close(self) -> None:
        await self._inner.close()


def make_connector(
    *, allow_private: bool, trusted_hosts: Iterable[str], limit: int = 100,
    ttl_dns_cache: int = 10,
) -> aiohttp.TCPConnector:
    """The delivery session's connector: every name it connects to passes `PolicyResolver`.

    Only checked answers are cached, so the DNS cache cannot bring a forbidden address back.
    Call inside the running event loop.
    """
    resolver = PolicyResolver(allow_private=allow_private, trusted_hosts=trusted_hosts)
    return aiohttp.TCPConnector(resolver=resolver, limit=limit, ttl_dns_cache=ttl_dns_cache)


def check_subscriber_host(url: str, allowed: Sequence[str]) -> None:
    """Refuse a manifest subscriber whose host is not in IMAGEDROP_SUBSCRIBER_HOSTS (when set)."""
    if not allowed:
        return
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower().rstrip(".")
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return
    raise CallbackRefused(f"subscriber {redact(url)} is not in IMAGEDROP_SUBSCRIBER_HOSTS")
