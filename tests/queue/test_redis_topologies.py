"""Which Redis the queue runs on: Redis Cluster is refused at start-up with a clear error, and a
server that cannot take writes (a replica, or a primary demoted by a failover) is an outage
(Unavailable, retry), never a crash or INTERNAL. Real redis-server processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from reward_service.errors import Unavailable
from reward_service.queue.names import QueueNames
from reward_service.queue.redis_broker import RedisBroker
from reward_service.queue.redis_client import UnsupportedRedis, parse_sentinels
from tests.queue.conftest import job
from tests.support.redis_server import RedisServer, redis_server


async def test_a_cluster_node_is_refused_at_start_naming_the_supported_topologies(
    tmp_path: Path,
) -> None:
    args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
    with redis_server(directory=tmp_path / "node", args=args) as node:
        broker = RedisBroker(node.url, names=QueueNames(prefix="c"))
        try:
            with pytest.raises(UnsupportedRedis) as refused:
                await broker.start()
        finally:
            await broker.close()
    message = str(refused.value)
    assert "cluster mode" in message and "hash slots" in message
    assert "standalone" in message and "Sentinel" in message


async def test_a_demoted_primary_is_an_outage_not_an_error(
    redis_own: RedisServer, tmp_path: Path
) -> None:
    """What a client pointed at a fixed address sees after a failover demoted its primary:
    every write is refused with READONLY."""
    names = QueueNames(prefix="ro")
    with redis_server(directory=tmp_path / "demoted") as demoted:
        broker = RedisBroker(demoted.url, names=names)
        try:
            await broker.start()
            raw = broker.redis
            await raw.execute_command("REPLICAOF", "127.0.0.1", str(redis_own.port))
            with pytest.raises(Unavailable, match="read only"):
                await broker.submit([job("x")])
            assert not broker.replies.waiting("x")
            assert await broker.receive("w1", 4, 0.3) == []  # logged; the loop lives on
            await broker.cancel(["x"])  # best effort: logged
            assert broker.stats.redis_errors >= 2
            late = RedisBroker(demoted.url, names=names)
            with pytest.raises(Unavailable, match="read only"):
                await late.start()  # a replica: not yet (its supervisor starts it again)
            await late.close()
        finally:
            await broker.close()


def test_sentinel_addresses_are_parsed_strictly() -> None:
    assert parse_sentinels(" a:26379, 10.0.0.2:26380 ,") == (("a", 26379), ("10.0.0.2", 26380))
    assert parse_sentinels("") == ()
    with pytest.raises(ValueError, match="host:port"):
        parse_sentinels("a:26379,b")
