"""Fetching user-supplied URLs without letting them reach our own network (SSRF).

Only public addresses may be fetched: loopback, private, link-local (cloud metadata), shared, reserved and
multicast ranges are refused, IPv4-mapped IPv6 included, unless ``YINZI_FETCH_ALLOW`` names the CIDR or host.
Two places enforce it, because aiohttp skips its resolver for literal IPs:

- :meth:`AddressPolicy.check_url` on every URL we are about to request (each redirect hop too);
- :class:`GuardedResolver` on every address DNS returns, the same answer the connection then uses, so a name
  cannot resolve to a public address for the check and a private one for the connect. Odd spellings such as
  ``http://2130706433/`` are host names to aiohttp, so they go through the resolver too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from yinzi.errors import OrderFailed
from yinzi.settings import Settings

CHUNK_BYTES = 256 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedAddress(Exception):
    """A URL points at an address we refuse to fetch."""


# Said with every refusal of a media address: the two ways a local file gets processed after all.
LOCAL_FILE_HINT = (
    "for a file on your own machine, upload it (POST /api/open/v1/uploads, then stuff.uploadId); "
    "an operator can let the service fetch from private addresses with YINZI_FETCH_ALLOW"
)


class AddressPolicy:
    def __init__(self, allow: Iterable[str] = ()) -> None:
        self._networks: list[IPNetwork] = []
        self._hosts: set[str] = set()
        for item in allow:
            try:
                self._networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self._hosts.add(item.lower().rstrip("."))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._hosts

    def check_ip(self, ip: IPAddress) -> None:
        mapped = getattr(ip, "ipv4_mapped", None)
        if mapped is not None:
            ip = mapped
        if any(ip in net for net in self._networks):
            return
        if not ip.is_global or ip.is_multicast:
            raise BlockedAddress(f"{ip} is not a public address")

    def check_answers(self, host: str, addresses: Iterable[str]) -> None:
        """Every address DNS gave for ``host`` must be public, unless the host itself is allowed."""
        if self.host_allowed(host):
            return
        for address in addresses:
            try:
                self.check_ip(ipaddress.ip_address(address))
            except BlockedAddress as exc:
                raise BlockedAddress(f"{host} resolves to {exc}") from None

    def check_url(self, url: str | URL) -> URL:
        """Scheme and literal-IP checks; host names are checked later, after DNS, by GuardedResolver."""
        parsed = URL(url) if isinstance(url, str) else url
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise BlockedAddress("only http and https URLs with a host can be fetched")
        host = parsed.host
        if self.host_allowed(host):
            return parsed
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if any(not label or len(label) > MAX_HOST_LABEL for label in host.rstrip(".").split(".")):
                raise BlockedAddress(
                    f"{host} is not a host name: a part between dots is empty or too long"
                ) from None
            odd = _odd_ipv4(host)
            if odd is None:
                return parsed
            self.check_ip(odd)
            raise BlockedAddress(
                f"{host} is an unusual spelling of {odd}: write the address as {odd}"
            ) from None
        self.check_ip(ip)
        return parsed


MAX_HOST_LABEL = 63  # DNS's longest label


def _odd_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Decimal, hex, octal and short spellings (2130706433, 0x7f000001, 127.1) that C resolvers accept."""
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


class GuardedResolver(AbstractResolver):
    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        self._policy.check_answers(host, (answer["host"] for answer in answers))
        return answers

    async def close(self) -> None:
        await self._inner.close()


class FetchError(Exception):
    """The remote end answered in a way we cannot follow (a redirect without Location, too many redirects)."""


class Fetcher:
    """Every request yinzi makes on a user's behalf: the address policy on every hop, redirects followed by
    hand (so each hop is checked), and the operator's host map.

    The host map (``YINZI_HOST_MAP``) sends requests for a host name to another base URL, keeping the original
    ``Host`` header: for a mirror or relay in production, and for local servers standing in for remote
    platforms in tests. Redirects are resolved against the original URL, so a mapped site behaves as itself.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        connect_timeout: float,
        read_timeout: float,
        host_map: Mapping[str, str] | None = None,
    ) -> None:
        self.policy = policy
        self._resolver = GuardedResolver(policy)
        self._host_map = {host.lower(): URL(base) for host, base in (host_map or {}).items()}
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=self._resolver, limit=64),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout),
        )

    @classmethod
    def for_settings(cls, settings: Settings) -> Fetcher:
        return cls(
            AddressPolicy(settings.fetch_allow),
            connect_timeout=settings.fetch_connect_timeout,
            read_timeout=settings.fetch_read_timeout,
            host_map=settings.host_map,
        )

    async def close(self) -> None:
        await self.session.close()

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        max_redirects: int,
        headers: Mapping[str, str] | None = None,
        proxy: str | None = None,
        data: bytes | None = None,
    ) -> AsyncIterator[tuple[URL, aiohttp.ClientResponse]]:
        """The first response that is not a redirect, with the URL it came from."""
        url = URL(url) if isinstance(url, str) else url
        for _hop in range(max_redirects + 1):
            target, sent_headers = self._route(url, headers or {})
            self.policy.check_url(url)
            self.policy.check_url(target)
            if proxy and url.host and not self.policy.host_allowed(url.host):
                # Through a proxy aiohttp never resolves the target itself, so the resolver's check runs here.
                await self._resolver.resolve(url.host)
            async with self.session.request(
                method, target, headers=sent_headers, proxy=proxy, data=data, allow_redirects=False
            ) as resp:
                if resp.status not in REDIRECT_STATUSES:
                    yield url, resp
                    return
                location = resp.headers.get("Location")
                if not location:
                    raise FetchError(f"HTTP {resp.status} without a Location header")
                url = url.join(URL(location))
        raise FetchError(f"more than {max_redirects} redirects")

    def _route(self, url: URL, headers: Mapping[str, str]) -> tuple[URL, dict[str, str]]:
        base = self._host_map.get((url.host or "").lower())
        if base is None:
            return url, dict(headers)
        target = URL.build(
            scheme=base.scheme,
            host=base.raw_host or "",
            port=base.explicit_port,
            path=url.raw_path,
            query_string=url.raw_query_string,
            encoded=True,
        )
        return target, {**headers, "Host": url.raw_host or ""}


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


async def download(
    fetcher: Fetcher,
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    max_redirects: int,
    total_timeout: float,
    headers: Mapping[str, str] | None = None,
) -> Path:
    """Streams ``url`` to ``dest``. Every failure becomes an OrderFailed with a reason a user can act on."""
    too_large = f"file too large: the limit is {human_bytes(max_bytes)}"
    try:
        async with asyncio.timeout(total_timeout):
            async with fetcher.request("GET", url, max_redirects=max_redirects, headers=headers) as (
                final,
                resp,
            ):
                if resp.status != 200:
                    raise OrderFailed(f"download failed: HTTP {resp.status} from {final.host}")
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise OrderFailed(too_large)
                await _stream_to(resp, dest, max_bytes, too_large)
                return dest
    except BlockedAddress as exc:
        raise OrderFailed(f"refused to fetch pathKey: {exc} ({LOCAL_FILE_HINT})") from None
    except FetchError as exc:
        raise OrderFailed(f"download failed: {exc}") from None
    except aiohttp.ServerTimeoutError:  # a TimeoutError too, so it is caught first
        raise OrderFailed("download failed: the server stopped sending data") from None
    except TimeoutError:
        raise OrderFailed(f"download timed out after {total_timeout:g} s") from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.__cause__, BlockedAddress):
            raise OrderFailed(f"refused to fetch pathKey: {exc.__cause__} ({LOCAL_FILE_HINT})") from None
        raise OrderFailed(f"could not connect to {exc.host}:{exc.port}: {exc.strerror or exc}") from None
    except aiohttp.ClientError as exc:
        raise OrderFailed(f"download failed: {type(exc).__name__}: {exc}") from None


async def _stream_to(resp: aiohttp.ClientResponse, dest: Path, max_bytes: int, too_large: str) -> None:
    # Counted after decompression, so a gzip bomb hits the same cap as a plain large file.
    received = 0
    with dest.open("wb") as f:
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            received += len(chunk)
            if received > max_bytes:
                raise OrderFailed(too_large)
            try:
                f.write(chunk)
            except OSError as exc:
                raise OrderFailed(f"the server could not store the download: {exc.strerror}") from None
