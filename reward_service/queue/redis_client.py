"""The one place a redis.asyncio client is built (a URL, or a primary found through Sentinel),
checked (standalone or Sentinel-managed, never Cluster) and its errors sorted into the few
kinds the queue handles: Redis down or failing over, Redis out of memory, anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.connection import parse_url
from redis.exceptions import AuthenticationError, MasterDownError, OutOfMemoryError, ReadOnlyError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# No writable primary right now: an outage, or a failover in progress. A demoted primary
# answers READONLY, a replica cut off from its primary MASTERDOWN, and while the sentinels
# elect a new primary the client raises MasterNotFoundError (a ConnectionError). All of them
# pass once the new primary is known, so callers retry or answer UNAVAILABLE, never crash.
REDIS_DOWN: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    MasterDownError,
)
# maxmemory reached with `noeviction`: writes that grow memory are refused until some expire
# or are deleted. New work is refused (RESOURCE_EXHAUSTED); finishing work is not (the queue's
# scripts that drain it run with `allow-oom`).
REDIS_FULL: tuple[type[Exception], ...] = (OutOfMemoryError,)

SUPPORTED = "standalone Redis (>= 7.0) or a primary with replicas managed by Redis Sentinel"


class UnsupportedRedis(RuntimeError):
    """The server cannot hold the queue (Redis Cluster, Redis older than 7.0): a deployment
    error, reported at start-up rather than as wrong answers later."""


class RedisAuthFailed(RuntimeError):
    """Redis refused the credentials (wrong or missing password or user): a deployment error,
    reported at start-up instead of being retried as if Redis were down (redis-py's
    AuthenticationError is a ConnectionError)."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the queue's Redis is. With `sentinels`, the URL's host and port are ignored: the
    primary of `master_name` is asked of the sentinels on every (re)connect, so a failover is
    followed; the URL's database, user, password and scheme (rediss:// for TLS) still apply.

    `password` or `password_file` keep the password out of the URL: a Secret key may hold any
    characters, and URLs end up in logs and process listings. The file is read once, at
    connect; a rotated password takes effect when the process restarts."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = "mymaster"
    sentinel_password: str | None = None
    password: str | None = None
    password_file: str | None = None

    def resolved_password(self) -> str | None:
        """The password given beside the URL (None: the URL's own, if any). One source only:
        two would leave the reader guessing which one Redis got."""
        sources = [
            name
            for name, given in (
                ("the URL", parse_url(self.url).get("password")),
                ("RRM_QUEUE__REDIS_PASSWORD", self.password),
                ("RRM_QUEUE__REDIS_PASSWORD_FILE", self.password_file),
            )
            if given
        ]
        if len(sources) > 1:
            raise ValueError(f"the Redis password is given twice ({' and '.join(sources)})")
        if self.password_file:
            text = Path(self.password_file).read_text()
            # `echo secret > file` and editors add a newline that is no part of the password.
            return text.removesuffix("\n").removesuffix("\r")
        return self.password

    def describe(self) -> str:
        """For logs and errors: never the password."""
        if self.sentinels:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"Sentinel {hosts} (primary {self.master_name!r})"
        opts = parse_url(self.url)
        return f"{opts.get('host', '?')}:{opts.get('port', 6379)}"


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """'host1:26379, host2:26379' -> ((host1, 26379), (host2, 26379)); '' -> ()."""
    out: list[tuple[str, int]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"sentinel address {item!r} is not host:port")
        out.append((host.strip("[]"), int(port)))
    return tuple(out)


def connect(
    target: RedisTarget | str,
    *,
    max_connections: int = 32,
    socket_timeout_s: float = 10.0,
    retries: int = 6,
) -> Redis:
    """A client whose connection errors are retried with exponential backoff (~1.5 s in all
    with the defaults) before they surface: long enough for a blip or a restart, short enough
    for callers' deadlines. A failover takes longer; callers see Unavailable and retry."""
    if isinstance(target, str):
        target = RedisTarget(target)
    password = target.resolved_password()
    common: dict[str, Any] = {
        "max_connections": max_connections,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.02), retries),
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": min(2.0, socket_timeout_s),
        "health_check_interval": 30,
    }
    if password is not None:
        common["password"] = password  # from_url keeps it: the URL has none
    if not target.sentinels:
        # Few connections suffice (commands are batched); past the pool size callers wait.
        pool = BlockingConnectionPool.from_url(target.url, timeout=socket_timeout_s, **common)
        return Redis(connection_pool=pool)
    opts = parse_url(target.url)
    # The URL's password and `common`'s never both exist (resolved_password).
    auth = {k: opts[k] for k in ("db", "username", "password") if opts.get(k) is not None}
    sentinel_auth = {"password": target.sentinel_password} if target.sentinel_password else {}
    sentinel = Sentinel(
        list(target.sentinels),
        sentinel_kwargs={
            "socket_timeout": min(2.0, socket_timeout_s),
            "socket_connect_timeout": min(2.0, socket_timeout_s),
            **sentinel_auth,
        },
    )
    return sentinel.master_for(
        target.master_name,
        connection_pool_class=SentinelConnectionPool,
        ssl=target.url.startswith("rediss://"),
        **auth,
        **common,
    )


async def close(redis: Redis) -> None:
    """Close the client, its pool and (for a Sentinel-managed one) its sentinel connections."""
    pool = redis.connection_pool
    await redis.aclose()
    await pool.disconnect()
    if isinstance(pool, SentinelConnectionPool):
        await pool.sentinel_manager.aclose()


async def check_server(redis: Redis) -> None:
    """Refuse a server the queue cannot run on. Redis Cluster: the queue's Lua scripts touch
    a job's stream, result, lease, parked copies and its callers' reply streams together, keys
    that hash to different slots, so a cluster would refuse them (CROSSSLOT) or, worse, a
    proxy would split them. Redis < 7.0: no XINFO lag (backpressure, KEDA) and no script flags
    (`allow-oom`, which lets workers finish their jobs when Redis is full)."""
    try:
        info = await redis.info()
    except AuthenticationError as exc:
        where = redis.connection_pool.connection_kwargs
        raise RedisAuthFailed(
            f"Redis at {where.get('host', '?')}:{where.get('port', '?')} refused the "
            f"credentials ({exc}): check the password (RRM_QUEUE__REDIS_PASSWORD or "
            "RRM_QUEUE__REDIS_PASSWORD_FILE, or the one in RRM_QUEUE__REDIS_URL) and the user"
        ) from exc
    if str(info.get("cluster_enabled", 0)) == "1":
        raise UnsupportedRedis(
            "the Redis server runs in cluster mode (cluster_enabled:1), which the queue does not "
            "support: its Lua scripts use keys in different hash slots. Use " + SUPPORTED + "."
        )
    version = str(info.get("redis_version", "0"))
    if _major(version) < 7:
        raise UnsupportedRedis(f"Redis {version} is too old for the queue; use {SUPPORTED}.")


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0
