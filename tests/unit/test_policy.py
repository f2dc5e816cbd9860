"""Callback URL policy: rewrites, syntax, address checks and redaction."""

from __future__ import annotations

import socket
from collections.abc import Sequence

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from imagedrop.delivery.policy import (
    PolicyResolver,
    apply_rewrites,
    check_destination,
    check_syntax,
    make_connector,
    redact,
    rewrite_targets,
)
from imagedrop.errors import CallbackRefused, ConfigError, DeliveryTransient, InputError
from imagedrop.hostports import check_rules


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    """A name lookup that answers `addresses` for any host and records what it was asked."""
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        asked.append((host, port))
        return list(addresses)

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


class TestRedact:
    """redact() keeps scheme, host, port and path only."""

    def test_strips_credentials_query_fragment(self) -> None:
        """Userinfo, query and fragment are removed."""
        url = "https://user:s3cret@hooks.example.com:8443/a/b?token=abc&x=1#frag"
        assert redact(url) == "https://hooks.example.com:8443/a/b"

    def test_plain_url_unchanged(self) -> None:
        """A URL with nothing to hide is kept as is."""
        assert redact("http://example.com/cb") == "http://example.com/cb"

    def test_ipv6_host(self) -> None:
        """IPv6 literals keep their brackets."""
        assert redact("http://[::1]:8080/cb?k=v") == "http://[::1]:8080/cb"

    def test_invalid(self) -> None:
        """An unparseable URL gives a placeholder, never the raw text."""
        assert redact("http://host:notaport/?secret=1") == "<invalid url>"


class TestApplyRewrites:
    """apply_rewrites() swaps host[:port] by operator rule."""

    RULES = (("wxo-server:4321", "127.0.0.1:14321"), ("tunnel.local", "10.0.0.5"))

    def test_host_and_port_rule(self) -> None:
        """The WXO-in-a-VM example: host and port both replaced, path and query kept."""
        url, matched = apply_rewrites("http://wxo-server:4321/api/cb?id=7", self.RULES)
        assert (url, matched) == ("http://127.0.0.1:14321/api/cb?id=7", True)

    def test_case_insensitive_host(self) -> None:
        """Host names match regardless of case."""
        assert apply_rewrites("http://WXO-Server:4321/cb", self.RULES)[1] is True

    def test_port_must_match_when_given(self) -> None:
        """A rule with a port does not touch another port."""
        assert apply_rewrites("http://wxo-server:9999/cb", self.RULES) == (
            "http://wxo-server:9999/cb",
            False,
        )

    def test_default_port_matches(self) -> None:
        """A rule naming port 443 matches an https URL without an explicit port."""
        url, matched = apply_rewrites("https://h.example/cb", [("h.example:443", "127.0.0.1:8443")])
        assert (url, matched) == ("https://127.0.0.1:8443/cb", True)

    def test_portless_rule_keeps_port(self) -> None:
        """A rule without ports swaps the host only."""
        assert apply_rewrites("http://tunnel.local:8080/x", self.RULES) == (
            "http://10.0.0.5:8080/x",
            True,
        )

    def test_keeps_userinfo(self) -> None:
        """Credentials in the URL travel on to the rewritten host."""
        url, _ = apply_rewrites("http://u:p@tunnel.local/x", self.RULES)
        assert url == "http://u:p@10.0.0.5/x"

    def test_no_match(self) -> None:
        """Unmatched URLs are returned unchanged."""
        assert apply_rewrites("https://example.com/cb", self.RULES) == (
            "https://example.com/cb",
            False,
        )

    def test_ipv6_target(self) -> None:
        """Bracketed IPv6 targets are written back with brackets."""
        url, _ = apply_rewrites("http://a:1/x", [("a:1", "[::1]:2")])
        assert url == "http://[::1]:2/x"


class TestCheckSyntax:
    """check_syntax() refuses URLs that can never be delivered."""

    @pytest.mark.parametrize(
        "url", ["https://example.com/cb", "http://127.0.0.1:8080/", "HTTP://Example.com"]
    )
    def test_accepts_http_urls(self, url: str) -> None:
        """http and https with a host pass."""
        check_syntax(url)

    @pytest.mark.parametrize(
        ("url", "words"),
        [
            ("ftp://example.com/x", "scheme"),
            ("file:///etc/passwd", "scheme"),
            ("example.com/cb", "scheme"),
            ("http:///nohost", "no host"),
            ("http://example.com:99999/", "not a valid URL"),
            ("http://exa mple.com/", "whitespace"),
        ],
    )
    def test_refuses(self, url: str, words: str) -> None:
        """Bad schemes, missing hosts, bad ports and whitespace are refused clearly."""
        with pytest.raises(CallbackRefused, match=words):
            check_syntax(url)

    def test_refusal_is_4xx_and_redacted(self) -> None:
        """The error is an InputError and never echoes the query string."""
        with pytest.raises(CallbackRefused) as info:
            check_syntax("gopher://example.com/x?token=SECRET")
        assert isinstance(info.value, InputError)
        assert "SECRET" not in str(info.value)


class TestCheckDestination:
    """check_destination() checks every resolved address against the policy."""

    async def test_public_literal_allowed(self) -> None:
        """A public address passes without a lookup."""
        resolve = resolver()
        await check_destination(
            "http://93.184.216.34/cb", allow_private=False, rewritten=False, resolve=resolve
        )
        assert resolve.asked == []

    async def test_public_name_allowed(self) -> None:
        """A name resolving to public addresses passes; the lookup uses the URL's port."""
        resolve = resolver("93.184.216.34", "2606:2800:220:1::1")
        await check_destination(
            "https://hooks.example.com/cb", allow_private=False, rewritten=False, resolve=resolve
        )
        assert resolve.asked == [("hooks.example.com", 443)]

    @pytest.mark.parametrize(
        ("address", "kind"),
        [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "CGNAT"),
            ("fc00::1", "private"),
            ("fd12:3456::1", "private"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("240.0.0.1", "reserved"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::7f00:1", "loopback"),
        ],
    )
    async def test_private_refused_by_default(self, address: str, kind: str) -> None:
        """Loopback, private, CGNAT, unspecified, multicast and reserved are refused."""
        with pytest.raises(CallbackRefused, match=kind) as info:
            await check_destination(
                "http://cb.example/x?token=SECRET",
                allow_private=False,
                rewritten=False,
                resolve=resolver(address),
            )
        assert "IMAGEDROP_ALLOW_PRIVATE_CALLBACKS" in str(info.value)
        assert "SECRET" not in str(info.value)

    @pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "::1", "::ffff:192.168.0.1"])
    async def test_private_allowed_when_configured(self, address: str) -> None:
        """allow_private lets loopback and private targets through."""
        await check_destination(
            "http://cb.example/x", allow_private=True, rewritten=False, resolve=resolver(address)
        )

    async def test_private_allowed_after_operator_rewrite(self) -> None:
        """A URL produced by an operator rewrite rule may point at a private host."""
        await check_destination(
            "http://127.0.0.1:14321/x", allow_private=False, rewritten=True, resolve=resolver()
        )

    @pytest.mark.parametrize(
        "address",
        [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
        ],
    )
    @pytest.mark.parametrize(("allow", "rewritten"), [(False, False), (True, False), (True, True)])
    async def test_metadata_always_refused(
        self, address: str, allow: bool, rewritten: bool
    ) -> None:
        """Link-local and cloud metadata addresses are refused whatever the settings."""
        with pytest.raises(CallbackRefused, match="metadata"):
            await check_destination(
                "http://cb.example/x",
                allow_private=allow,
                rewritten=rewritten,
                resolve=resolver(address),
            )

    async def test_metadata_literal_refused(self) -> None:
        """A literal metadata URL is refused without a lookup."""
        with pytest.raises(CallbackRefused):
            await check_destination(
                "http://169.254.169.254/latest/meta-data/",
                allow_private=True,
                rewritten=False,
                resolve=resolver(),
            )

    async def test_every_address_checked(self) -> None:
        """One private record among public ones is enough to refuse."""
        with pytest.raises(CallbackRefused, match=r"10\.0\.0\.1"):
            await check_destination(
                "http://cb.example/x",
                allow_private=False,
                rewritten=False,
                resolve=resolver("93.184.216.34", "10.0.0.1"),
            )

    async def test_unresolvable_is_transient(self) -> None:
        """A name that does not resolve may resolve later: a transient error, redacted."""

        async def fail(host: str, port: int) -> Sequence[str]:
            raise OSError(-2, "Name or service not known")

        with pytest.raises(DeliveryTransient, match="cannot resolve") as info:
            await check_destination(
                "http://u:pw@nowhere.invalid/x?token=SECRET",
                allow_private=False,
                rewritten=False,
                resolve=fail,
            )
        assert "SECRET" not in str(info.value) and "pw" not in str(info.value)

    async def test_no_addresses_is_transient(self) -> None:
        """An empty answer is treated like a failed lookup."""
        with pytest.raises(DeliveryTransient):
            await check_destination(
                "http://cb.example/x", allow_private=False, rewritten=False, resolve=resolver()
            )

    async def test_syntax_checked_too(self) -> None:
        """A bad scheme is refused before any lookup."""
        with pytest.raises(CallbackRefused, match="scheme"):
            await check_destination(
                "ftp://cb.example/x", allow_private=True, rewritten=False, resolve=resolver()
            )

    async def test_real_lookup_of_literal_localhost_name(self) -> None:
        """Without an injected resolver, `localhost` resolves via the loop and is loopback."""
        with pytest.raises(CallbackRefused, match="loopback"):
            await check_destination("http://localhost:1/x", allow_private=False, rewritten=False)


class TestCheckRules:
    """check_rules() refuses malformed rewrite rules at start-up."""

    def test_good_rules(self) -> None:
        """host, host:port and [v6]:port are all accepted."""
        check_rules([("wxo-server:4321", "127.0.0.1:14321"), ("a", "[::1]:8080")])

    @pytest.mark.parametrize(
        "rule", [(":80", "a"), ("a:port", "b"), ("a", "b:0"), ("a", "b:70000")]
    )
    def test_bad_rules(self, rule: tuple[str, str]) -> None:
        """Missing hosts and bad ports are configuration errors naming the variable."""
        with pytest.raises(ConfigError, match="IMAGEDROP_CALLBACK_REWRITES"):
            check_rules([rule])


class FixedResolver(AbstractResolver):
    """An aiohttp resolver answering `addresses` for any name, recording what it was asked."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(hostname=host, host=a, port=port,
                          family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                          proto=0, flags=socket.AI_NUMERICHOST)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


@pytest.fixture(name="closed_port")
def _closed_port() -> int:
    """A port nothing listens on: bound then released, so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def post_via(resolver: AbstractResolver, url: str) -> None:
    connector = aiohttp.TCPConnector(resolver=resolver)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(url, data=b"{}"):
            pass


class TestPolicyResolver:
    """PolicyResolver checks the very answer the connector connects to (DNS rebinding)."""

    async def test_public_answer_passes(self) -> None:
        """Public addresses come back unchanged."""
        inner = FixedResolver("93.184.216.34", "2606:2800:220:1::1")
        resolver = PolicyResolver(allow_private=False, inner=inner)
        results = await resolver.resolve("hooks.example.com", 443)
        assert [r["host"] for r in results] == ["93.184.216.34", "2606:2800:220:1::1"]
        assert inner.asked == ["hooks.example.com"]

    @pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "::1", "169.254.169.254"])
    async def test_rebinding_answer_fails_the_connection(self, address: str) -> None:
        """A name answering a forbidden address at connect time: CallbackRefused, no connect."""
        inner = FixedResolver(address)
        with pytest.raises(CallbackRefused, match=r"rebind\.example") as info:
            await post_via(PolicyResolver(allow_private=False, inner=inner),
                           "http://rebind.example:8080/cb?token=SECRET")
        assert inner.asked == ["rebind.example"]
        assert "SECRET" not in str(info.value)

    async def test_one_forbidden_address_refuses_the_name(self) -> None:
        """As in check_destination, a private record among public ones refuses the name."""
        resolver = PolicyResolver(allow_private=False,
                                  inner=FixedResolver("93.184.216.34", "10.0.0.1"))
        with pytest.raises(CallbackRefused, match=r"private address 10\.0\.0\.1"):
            await resolver.resolve("cb.example", 80)

    async def test_private_allowed_when_configured(self) -> None:
        """allow_private lets private answers through."""
        resolver = PolicyResolver(allow_private=True, inner=FixedResolver("10.0.0.1"))
        assert [r["host"] for r in await resolver.resolve("cb.example", 80)] == ["10.0.0.1"]

    @pytest.mark.parametrize("address", ["169.254.169.254", "fe80::1", "fd00:ec2::254"])
    async def test_metadata_refused_even_when_private_allowed(self, address: str) -> None:
        """Link-local and metadata answers are refused whatever the settings."""
        resolver = PolicyResolver(allow_private=True, trusted_hosts=["cb.example"],
                                  inner=FixedResolver(address))
        with pytest.raises(CallbackRefused, match="metadata"):
            await resolver.resolve("cb.example", 80)

    async def test_trusted_host_may_be_private(self) -> None:
        """A rewrite target may resolve to a private address; other names may not."""
        inner = FixedResolver("10.0.0.5")
        resolver = PolicyResolver(allow_private=False,
                                  trusted_hosts=rewrite_targets([("wxo:4321", "Tunnel.Local")]),
                                  inner=inner)
        assert [r["host"] for r in await resolver.resolve("tunnel.local", 80)] == ["10.0.0.5"]
        assert await resolver.resolve("TUNNEL.LOCAL.", 80)  # case and a trailing dot ignored
        with pytest.raises(CallbackRefused, match="private"):
            await resolver.resolve("wxo", 4321)

    async def test_trusted_host_never_metadata(self) -> None:
        """Trust lifts the private check only: a trusted name answering metadata is refused."""
        resolver = PolicyResolver(allow_private=False, trusted_hosts=["tunnel.local"],
                                  inner=FixedResolver("169.254.169.254"))
        with pytest.raises(CallbackRefused, match="metadata"):
            await resolver.resolve("tunnel.local", 80)

    async def test_literal_ip_bypasses_resolvers(self, closed_port: int) -> None:
        """aiohttp never asks a resolver about IP literals: check_destination must cover them."""
        inner = FixedResolver("93.184.216.34")
        with pytest.raises(aiohttp.ClientConnectorError):  # it connected: refused by the OS
            await post_via(PolicyResolver(allow_private=False, inner=inner),
                           f"http://127.0.0.1:{closed_port}/cb")
        assert inner.asked == []
        with pytest.raises(CallbackRefused, match="loopback"):
            await check_destination(f"http://127.0.0.1:{closed_port}/cb",
                                    allow_private=False, rewritten=False)

    async def test_lookup_failure_stays_a_connection_error(self) -> None:
        """A name that does not resolve is aiohttp's DNS error (retried), not a refusal."""

        class Failing(FixedResolver):
            async def resolve(self, host: str, port: int = 0,
                              family: socket.AddressFamily = socket.AF_INET
                              ) -> list[ResolveResult]:
                raise OSError(-2, "Name or service not known")

        with pytest.raises(aiohttp.ClientConnectorDNSError):
            await post_via(PolicyResolver(allow_private=False, inner=Failing()),
                           "http://nowhere.example/cb")


class TestMakeConnector:
    """make_connector() builds the delivery session's connector around PolicyResolver."""

    async def test_real_lookup_of_localhost_refused(self, closed_port: int) -> None:
        """`localhost` resolves (for real) to loopback: refused before any connect."""
        connector = make_connector(allow_private=False, trusted_hosts=())
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises(CallbackRefused, match="loopback"):
                await session.post(f"http://localhost:{closed_port}/cb")

    async def test_trusted_localhost_connects(self, closed_port: int) -> None:
        """A trusted name gets through the policy; only the closed port stops it."""
        connector = make_connector(allow_private=False, trusted_hosts=["localhost"])
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises(aiohttp.ClientConnectorError) as info:
                await session.post(f"http://localhost:{closed_port}/cb")
        assert not isinstance(info.value, aiohttp.ClientConnectorDNSError)


class TestSubscriberHosts:
    """IMAGEDROP_SUBSCRIBER_HOSTS bounds where manifest subscribers may point."""

    def test_any_host_when_unset(self):
        from imagedrop.delivery.policy import check_subscriber_host

        check_subscriber_host("https://anything.example/x", ())

    def test_listed_hosts_and_wildcards(self):
        from imagedrop.delivery.policy import check_subscriber_host

        allowed = ("hooks.example.com", "*.corp.example")
        check_subscriber_host("https://hooks.example.com/a?x=1", allowed)
        check_subscriber_host("https://a.b.corp.example/a", allowed)
        for url in ("https://evil.example/a", "https://corp.example.evil/a",
                    "https://hooks.example.com.evil/a"):
            with pytest.raises(CallbackRefused, match="IMAGEDROP_SUBSCRIBER_HOSTS"):
                check_subscriber_host(url, allowed)
