"""REDIS_URL: one Redis server, a primary found through Sentinel, or a Redis Cluster.

    redis://[[user]:password@]host[:port][/db]       one server (also rediss://, unix://)
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
        [?sentinel_username=...&sentinel_password=...]
    redis+cluster://[[user]:password@]host[:port][,host[:port]...]

``rediss+sentinel`` and ``rediss+cluster`` speak TLS to the servers. The user and password
are the Redis servers'; Sentinels that want their own give them as query parameters.
Parsed here without I/O so that the settings can refuse a malformed URL at start-up.
redis-py's own ``from_url`` reads one host only, hence this parser for the lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = SINGLE_SCHEMES + SENTINEL_SCHEMES + CLUSTER_SCHEMES

SENTINEL_PORT = 26379
REDIS_PORT = 6379

_HOST_PORT = re.compile(
    r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d+))?$"
)


@dataclass(frozen=True)
class RedisTarget:
    kind: str  # "single", "sentinel" or "cluster"
    url: str = field(repr=False)  # secrets stay out of the repr
    nodes: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    sentinel_auth: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, url: str) -> RedisTarget:
        """The target a URL names; ValueError (a readable reason) if it is malformed."""
        scheme, separator, rest = url.partition("://")
        if not separator or scheme not in SCHEMES:
            raise ValueError(f"must be a URL starting with {'://, '.join(SCHEMES)}://")
        if scheme in SINGLE_SCHEMES:
            return cls("single", url)
        rest, _, query = rest.partition("?")
        netloc, _, path = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        if not at:
            hosts = netloc
        username, password = _credentials(userinfo)
        default_port = SENTINEL_PORT if scheme in SENTINEL_SCHEMES else REDIS_PORT
        nodes = tuple(_node(item, default_port) for item in hosts.split(","))
        tls = scheme.startswith("rediss")
        parts = [part for part in path.split("/") if part]
        if scheme in CLUSTER_SCHEMES:
            if parts:
                raise ValueError("a cluster URL names no database (a cluster has only db 0)")
            return cls("cluster", url, nodes, username=username, password=password, tls=tls)
        if not parts or len(parts) > 2:
            raise ValueError("a Sentinel URL ends with /service_name or /service_name/db")
        if len(parts) == 2 and not parts[1].isdigit():
            raise ValueError("the database after the service name must be a number")
        options = {name: values[-1] for name, values in parse_qs(query).items()}
        unknown = set(options) - {"sentinel_username", "sentinel_password"}
        if unknown:
            raise ValueError("the options are sentinel_username and sentinel_password")
        sentinel_auth = {name.removeprefix("sentinel_"): value for name, value in options.items()}
        return cls(
            "sentinel",
            url,
            nodes,
            service=unquote(parts[0]),
            db=int(parts[1]) if len(parts) == 2 else 0,
            username=username,
            password=password,
            tls=tls,
            sentinel_auth=sentinel_auth,
        )


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    return unquote(user) or None, unquote(password) if colon else None


def _node(item: str, default_port: int) -> tuple[str, int]:
    # The messages quote nothing: a password with an unescaped "/" or "," would land here.
    match = _HOST_PORT.match(item.strip())
    if not match:
        raise ValueError("list the servers as host:port,host:port")
    port = int(match["port"]) if match["port"] else default_port
    if not 0 < port < 65536:
        raise ValueError("a port must be 1 to 65535")
    return match["ipv6"] or match["host"], port
