# SPDX-License-Identifier: AGPL-3.0-only
"""HTTP fetches from URLs someone else chose (provider URLs on-chain, gateways).

A provider URL is set by whoever owns a model, so the node treats every such URL as
hostile:

- only `http` and `https`;
- the host is resolved once, every address it resolves to is checked (no loopback,
  private, link-local, multicast, unspecified or otherwise non-global address), and
  the connection goes to the checked address, so a DNS answer that changes between
  the check and the connection (DNS rebinding) cannot move it elsewhere;
- redirects are not followed (a 3xx answer is a failure);
- bodies are read with a byte cap, counted as they stream, and never decoded
  (`Accept-Encoding: identity`, raw bytes), so a compressed body cannot expand;
- errors name the status code and the host, never the upstream body.

A node on a local chain (Anvil) serves everything from loopback, so `FetchPolicy`
lets private addresses through there; elsewhere an explicit allow-list of networks
can let some through (a test, a private deployment).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import httpx

from mercato.errors import ConfigError, FetchTooLargeError, StorageBackendError, UnsafeURLError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=300.0)

MAX_FETCH_BYTES = 4 * 1024**3 + 256 * 1024**2
"""The most one fetch may take: the largest package (4 GiB) plus room for its tar
headers, encryption and DAG nodes. Callers that know the size pass a tighter cap."""

_SCHEMES = {"http": 80, "https": 443}


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (TCP).

    Raises:
        OSError: The name does not resolve.
    """
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _is_public(address: IPAddress) -> bool:
    # An IPv4 address wrapped in IPv6 (::ffff:a.b.c.d, 6to4) reaches the IPv4 host.
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is not None:
            return _is_public(inner)
        if address.is_site_local:
            return False
    return address.is_global and not address.is_multicast and not address.is_unspecified


def origin_of(url: str | httpx.URL) -> str:
    """`scheme://host:port` of a URL: what errors name instead of a full URL or a body."""
    try:
        parsed = httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "(unparsable URL)"
    port = parsed.port or _SCHEMES.get(parsed.scheme, 0)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{host}:{port}"


@dataclass(frozen=True)
class FetchPolicy:
    """Where this node may connect when a URL comes from someone else, and how much
    it may read.

    Attributes:
        allow_private: Let every address through (a node on a local chain, where
            providers are on loopback).
        allowed_networks: Networks let through even though they are not public.
        resolver: Resolves a host to addresses (the system's by default).
        max_bytes: The most one fetch may read.
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False)
    max_bytes: int = MAX_FETCH_BYTES

    @classmethod
    def from_settings(
        cls, *, local_chain: bool, allow: Iterable[str] = (), max_bytes: int = MAX_FETCH_BYTES
    ) -> FetchPolicy:
        """The policy of a node.

        Args:
            local_chain: The node runs on a local chain: private addresses are allowed.
            allow: Networks in CIDR form ("127.0.0.0/8", "fd00::/8") to allow anyway.
            max_bytes: The most one fetch may read.

        Returns:
            The policy.

        Raises:
            ConfigError: An entry of `allow` is not a network.
        """
        networks: list[IPNetwork] = []
        for entry in allow:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ConfigError(
                    f"fetch_allow_networks: {entry!r} is not a network such as 10.0.0.0/8."
                ) from exc
        return cls(allow_private=local_chain, allowed_networks=tuple(networks), max_bytes=max_bytes)

    def check_url(self, url: str) -> httpx.URL:
        """Check a URL's form (scheme, host) without connecting.

        Args:
            url: The URL.

        Returns:
            The parsed URL.

        Raises:
            UnsafeURLError: Not an http(s) URL with a host.
        """
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            parsed = None
        if parsed is None or parsed.scheme not in _SCHEMES or not parsed.host:
            raise UnsafeURLError(
                f"{url!r} is not an http(s) URL with a host; Mercato fetches nothing else.",
                url=str(url)[:200],
                host=parsed.host if parsed is not None else "",
            )
        return parsed

    def address_for(self, url: httpx.URL) -> str:
        """Resolve the URL's host and pick the address to connect to.

        Every resolved address must be allowed: a name that resolves to one public and
        one private address is refused, since the connection could go to either.

        Args:
            url: A URL that passed `check_url`.

        Returns:
            The address (an IP literal) to connect to.

        Raises:
            UnsafeURLError: The host resolves to an address this node must not reach, or
                does not resolve.
        """
        host = url.host
        port = url.port or _SCHEMES.get(url.scheme, 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = [
                    ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(host, port)
                ]
            except (OSError, ValueError) as exc:
                raise UnsafeURLError(
                    f"The host {host} does not resolve; check the provider URL.",
                    url=origin_of(url),
                    host=host,
                ) from exc
        if not addresses:
            raise UnsafeURLError(
                f"The host {host} does not resolve; check the provider URL.",
                url=origin_of(url),
                host=host,
            )
        if not self.allow_private:
            for address in addresses:
                if not _is_public(address) and not any(
                    address in network for network in self.allowed_networks
                ):
                    raise UnsafeURLError(
                        f"{origin_of(url)} resolves to {address}, a loopback, private or "
                        "otherwise non-public address, which this node does not fetch from "
                        "(outside local-chain mode). The model's owner must record a public "
                        "provider URL.",
                        url=origin_of(url),
                        host=host,
                    )
        return str(addresses[0])

    def client(self, timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> httpx.Client:
        """An httpx client that checks every request against this policy.

        It never follows redirects, asks for unencoded bodies, and ignores proxy
        variables (a proxy would connect to whatever the URL names).
        """
        return httpx.Client(
            transport=CheckedTransport(self),
            timeout=timeout,
            follow_redirects=False,
            headers={"Accept-Encoding": "identity"},
        )


class CheckedTransport(httpx.BaseTransport):
    """An httpx transport that connects only to addresses the policy allows.

    The request's URL is rewritten to the checked address; the Host header (set when
    the request was built) and, for https, the TLS server name keep the original host,
    so virtual hosts and certificate checks work as before.
    """

    def __init__(self, policy: FetchPolicy) -> None:
        """Args:
        policy: The policy every request is checked against.
        """
        self._policy = policy
        self._inner = httpx.HTTPTransport(trust_env=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Check, pin the address, send.

        Raises:
            UnsafeURLError: The target is not allowed.
        """
        url = self._policy.check_url(str(request.url))
        address = self._policy.address_for(url)
        if address != url.host:
            if url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": url.host}
            request.url = request.url.copy_with(host=address)
        return self._inner.handle_request(request)

    def close(self) -> None:
        """Close the pooled connections."""
        self._inner.close()


def check_status(response: httpx.Response, url: str | httpx.URL) -> None:
    """Refuse any answer but 200, naming only the status and the host.

    The body is never read: a hostile server could make it endless, or fill it with
    text meant to be shown to someone.

    Raises:
        StorageBackendError: The status is not 200 (a redirect included).
    """
    status = response.status_code
    if status == 200:
        return
    what = (
        "a redirect, which Mercato does not follow"
        if 300 <= status < 400
        else "an error"
        if status >= 400
        else "an unexpected status"
    )
    raise StorageBackendError(
        f"{origin_of(url)} answered HTTP {status} ({what}).", url=origin_of(url), status=status
    )


def capped(
    pieces: Iterable[bytes],
    limit: int,
    url: str | httpx.URL,
    max_seconds: float | None = None,
) -> Iterator[bytes]:
    """Pass body pieces through until more than `limit` bytes have come.

    Args:
        pieces: The body, as it streams (raw, not decoded).
        limit: The most bytes to accept.
        url: Where the body comes from, for the error.
        max_seconds: The most the whole body may take: a server that trickles a byte
            now and then never trips a read timeout, but trips this.

    Yields:
        The pieces.

    Raises:
        FetchTooLargeError: The body passed `limit`; the rest is not read.
        StorageBackendError: The body took longer than `max_seconds`.
    """
    deadline = time.monotonic() + max_seconds if max_seconds is not None else None
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > limit:
            raise FetchTooLargeError(
                f"{origin_of(url)} sent more than {limit} bytes, more than this fetch may "
                "take; the transfer was stopped.",
                host=origin_of(url),
                limit=limit,
            )
        if deadline is not None and time.monotonic() > deadline:
            raise StorageBackendError(
                f"{origin_of(url)} took more than {max_seconds:g} s to send {total} bytes; "
                "the transfer was stopped.",
                url=origin_of(url),
            )
        yield piece


def check_length(response: httpx.Response, limit: int, url: str | httpx.URL) -> None:
    """Refuse at once a body whose Content-Length announces more than `limit` bytes.

    Raises:
        FetchTooLargeError: The announced length is above `limit`.
    """
    announced = response.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        raise FetchTooLargeError(
            f"{origin_of(url)} announces {announced} bytes, more than this fetch may take "
            f"({limit}).",
            host=origin_of(url),
            limit=limit,
        )


def unreachable(exc: httpx.HTTPError, url: str | httpx.URL) -> StorageBackendError:
    """The error for a transport failure, naming the host and the kind of failure only."""
    return StorageBackendError(
        f"Could not reach {origin_of(url)} ({type(exc).__name__}).", url=origin_of(url)
    )


__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_FETCH_BYTES",
    "CheckedTransport",
    "FetchPolicy",
    "capped",
    "check_length",
    "check_status",
    "origin_of",
    "system_resolver",
    "unreachable",
]
