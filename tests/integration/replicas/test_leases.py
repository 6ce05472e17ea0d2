# SPDX-License-Identifier: AGPL-3.0-only
"""The leader lease on a real PostgreSQL and on a real file lock."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from mercato.leader import FileLease, Leadership, PostgresLease, lease_for, lock_key

from .conftest import PostgresServer

pytestmark = pytest.mark.integration
ADDRESS = "0x" + "ab" * 20
KEY = lock_key(31_337, ADDRESS, ["0x" + "01" * 20])


def _terminate(server: PostgresServer, holder_of: int | None = None) -> int:
    """Ends the server sessions of leases (all, or the one holding the `holder_of` key),
    as an operator, a restart or a server-side timeout would."""
    admin = f"host={server.host} port={server.port} user=postgres dbname=postgres"
    query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
    params: tuple[object, ...] = ("mercato-leader",)
    if holder_of is not None:
        query = (
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            " AND granted AND classid = %s AND objid = %s"
        )
        params = ((holder_of >> 32) & 0xFFFF_FFFF, holder_of & 0xFFFF_FFFF)
    with psycopg.connect(admin, autocommit=True) as conn:
        return len(conn.execute(query, params).fetchall())


def test_only_one_replica_holds_the_advisory_lock_until_its_session_ends(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.new_database()
    first, second = PostgresLease(url, KEY), PostgresLease(url, KEY)
    try:
        assert first.try_acquire() is True
        assert second.try_acquire() is False
        assert first.still_held() is True
        assert second.still_held() is False

        assert _terminate(postgres_server) == 2  # both sessions end; the lock goes with them

        assert first.still_held() is False
        assert second.try_acquire() is True  # reconnects, and now holds it
        assert first.try_acquire() is False
    finally:
        first.release()
        second.release()


def test_a_released_lease_is_taken_by_the_next_replica(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()
    first, second = PostgresLease(url, KEY), PostgresLease(url, KEY)
    try:
        assert first.try_acquire() is True
        first.release()
        assert second.try_acquire() is True
    finally:
        second.release()


def test_other_nodes_and_deployments_elect_their_own_leaders(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.new_database()
    other_accounts = lock_key(31_337, ADDRESS, ["0x" + "02" * 20])
    other_deployment = lock_key(1, ADDRESS, ["0x" + "01" * 20])
    leases = [PostgresLease(url, k) for k in (KEY, other_accounts, other_deployment)]
    try:
        assert [lease.try_acquire() for lease in leases] == [True, True, True]
    finally:
        for lease in leases:
            lease.release()


def test_the_password_of_the_index_url_stays_out_of_descriptions() -> None:
    lease = lease_for(
        "postgresql://mercato:s3cret@db.invalid:5432/index", Path("/unused"), 1, ADDRESS
    )
    assert isinstance(lease, PostgresLease)
    assert "s3cret" not in lease.describe()


def test_two_copies_of_a_node_on_one_data_directory_take_turns(tmp_path: Path) -> None:
    first = lease_for(None, tmp_path, 31_337, ADDRESS, ["0x" + "01" * 20])
    second = lease_for(
        f"sqlite:///{tmp_path}/index.sqlite", tmp_path, 31_337, ADDRESS, ["0x" + "01" * 20]
    )
    other = lease_for(None, tmp_path, 31_337, ADDRESS, ["0x" + "02" * 20])
    assert isinstance(first, FileLease) and isinstance(second, FileLease)
    try:
        assert first.try_acquire() is True
        assert second.try_acquire() is False
        assert other.try_acquire() is True  # another account's node runs its own agent
        first.release()
        assert second.try_acquire() is True
    finally:
        for lease in (first, second, other):
            lease.release()


class Duties:
    """Records when the leader's duties start and stop."""

    def __init__(self) -> None:
        self.running = 0
        self.started = threading.Event()
        self.stopped = threading.Event()

    def start(self) -> None:
        self.running += 1
        self.started.set()

    def stop(self) -> None:
        self.running -= 1
        self.stopped.set()


def test_a_leader_whose_session_ends_stops_its_duties_and_a_follower_takes_over(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.new_database()
    leader_duties, follower_duties = Duties(), Duties()
    leader = Leadership(
        PostgresLease(url, KEY), leader_duties.start, leader_duties.stop, check_every=0.2
    )
    leader.start()
    follower: Leadership | None = None
    try:
        assert leader.wait_until_settled(30)
        follower = Leadership(
            PostgresLease(url, KEY), follower_duties.start, follower_duties.stop, retry=0.2
        )
        follower.start()
        assert follower.wait_until_settled(1) is False
        assert follower_duties.running == 0

        assert _terminate(postgres_server, holder_of=KEY) == 1  # its session ends under it

        assert leader_duties.stopped.wait(30)
        assert follower.wait_until_settled(30)
        assert leader.is_leader is False
        assert (leader_duties.running, follower_duties.running) == (0, 1)
    finally:
        leader.stop()
        if follower is not None:
            follower.stop()
    assert follower_duties.running == 0  # stopping a leader stops its duties


class SilentLease:
    """A lease whose check never answers: a network partition between the leader and
    PostgreSQL (packets dropped, nothing fails). Stands in for a partition, which
    cannot be made on this machine without privileges over its network."""

    def __init__(self) -> None:
        self.partitioned = threading.Event()
        self.released = threading.Event()

    def try_acquire(self) -> bool:
        return not self.partitioned.is_set()

    def still_held(self) -> bool:
        if self.partitioned.is_set():
            threading.Event().wait(3600)
        return True

    def release(self) -> None:
        self.released.set()

    def abandon(self) -> None:
        self.released.set()

    def describe(self) -> str:
        return "silent lease"


def test_a_leader_cut_off_from_postgresql_steps_down_after_its_check_deadline() -> None:
    lease, duties = SilentLease(), Duties()
    leadership = Leadership(
        lease, duties.start, duties.stop, retry=0.2, check_every=0.2, check_timeout=0.5
    )
    leadership.start()
    try:
        assert leadership.wait_until_settled(30)
        lease.partitioned.set()
        assert duties.stopped.wait(30)
        assert leadership.is_leader is False
        assert lease.released.is_set()
    finally:
        leadership.stop()


def test_a_leader_whose_duties_died_gives_the_lease_to_another_replica(tmp_path: Path) -> None:
    lock = tmp_path / "leader.lock"
    first, second = FileLease(lock), FileLease(lock)
    first_duties, second_duties = Duties(), Duties()
    first_ok = threading.Event()
    first_ok.set()
    leader = Leadership(
        first,
        first_duties.start,
        first_duties.stop,
        duties_ok=first_ok.is_set,
        retry=5.0,
        check_every=0.1,
    )
    leader.start()
    follower: Leadership | None = None
    try:
        assert leader.wait_until_settled(30)
        follower = Leadership(
            second, second_duties.start, second_duties.stop, retry=0.1, check_every=0.1
        )
        follower.start()
        # The index follower thread stopped on an error it cannot get past.
        first_ok.clear()
        assert first_duties.stopped.wait(30)
        assert follower.wait_until_settled(30)
        assert leader.is_leader is False
        assert (first_duties.running, second_duties.running) == (0, 1)
    finally:
        leader.stop()
        if follower is not None:
            follower.stop()
