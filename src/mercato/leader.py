# SPDX-License-Identifier: AGPL-3.0-only
"""Which replica of a node follows the chain and runs the seller's agent.

Several gateway replicas may share one PostgreSQL index. All of them serve reads and
try calls; exactly one at a time — the leader — writes the index (`IndexFollower`) and
delivers keys (`SellerAgent`). Leadership is a lease:

- On PostgreSQL, a session-level advisory lock (`pg_try_advisory_lock`) taken on a
  connection the leader keeps open for nothing else. PostgreSQL releases it when that
  connection ends, so a leader that is killed (even with SIGKILL) hands over as soon as
  its socket closes. The leader checks the connection every few seconds, with a
  deadline measured here (a partitioned network answers nothing, it does not fail), and
  stops its duties the moment a check fails, before anything else can take over.
- On SQLite (one machine), an exclusive `flock` on `<data dir>/leader/<node>.lock`, so
  two copies of one node on a data directory never both run the agent; the kernel
  releases it when the process dies.

A node is its deployment and the accounts it sells from: nodes of other accounts sharing
the index or data directory run their own agents (see `lock_key`).

Followers try to take the lease every few seconds.

Being leader is an efficiency, not the safety net: the marketplace refuses a second
delivery of an order, so two agents running at once for a moment (a lease lost on the
server before the old leader notices) waste a transaction, never a key or a payment.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from mercato.errors import IndexDatabaseError
from mercato.gateway.state import IndexFollower

if TYPE_CHECKING:
    from mercato.agent import SellerAgent
    from mercato.gateway.state import GatewayState

log = logging.getLogger(__name__)

LOCK_DIR = "leader"  # <data dir>/leader/<node identity>.lock
RETRY_SECONDS = 3.0  # how often a follower tries to take the lease
CHECK_SECONDS = 2.0  # how often the leader checks it still holds it
CHECK_TIMEOUT = 4.0  # a check that takes longer than this counts as lost


class Lease(Protocol):
    """Something at most one process holds at a time."""

    def try_acquire(self) -> bool:
        """Takes the lease if nobody holds it; True when this process now holds it."""

    def still_held(self) -> bool:
        """Whether this process still holds the lease (may block on the network)."""

    def release(self) -> None:
        """Gives the lease up (also when it was already lost)."""

    def abandon(self) -> None:
        """Forgets the lease after a failed check, without waiting on the network."""

    def describe(self) -> str:
        """Where the lease lives, for logs (no password)."""


def lock_key(chain_id: int, marketplace: str, accounts: Sequence[str] = ()) -> int:
    """The advisory-lock key of one node's replicas: a signed 64-bit number.

    Replicas of one node sell from the same accounts. Two deployments, or two nodes
    selling from different accounts on one index, elect their leaders separately (each
    node's agent delivers only for its own accounts).
    """
    return int.from_bytes(_identity(chain_id, marketplace, accounts)[:8], "big", signed=True)


def _identity(chain_id: int, marketplace: str, accounts: Sequence[str]) -> bytes:
    names = " ".join(sorted(a.lower() for a in accounts))
    return hashlib.sha256(
        f"mercato leader {chain_id} {marketplace.lower()} {names}".encode()
    ).digest()


class PostgresLease:
    """A session-level advisory lock held on a dedicated connection.

    Args:
        url: The index's SQLAlchemy URL (`postgresql://` or `postgresql+psycopg://`).
        key: The advisory-lock key (`lock_key`).
        timeout: Seconds to connect, and the TCP timeouts that make a silent network
            fail a check instead of hanging it.

    Raises:
        IndexDatabaseError: The URL is malformed or not a PostgreSQL URL.
    """

    def __init__(self, url: str, key: int, *, timeout: float = CHECK_TIMEOUT) -> None:
        self._conninfo = _conninfo(url)
        self._where = _where(url)
        self.key = key
        self._timeout = timeout
        self._conn: psycopg.Connection[Any] | None = None

    def try_acquire(self) -> bool:
        # A session the server ended shows only when used: then one fresh connection.
        for fresh in (False, True):
            if fresh or self._conn is None or self._conn.closed:
                self._drop()
                try:
                    self._conn = self._connect()
                except psycopg.Error as exc:
                    log.warning("leader lease: cannot reach %s (%s)", self._where, _first_line(exc))
                    return False
            try:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            except psycopg.Error as exc:
                log.warning("leader lease: %s did not answer (%s)", self._where, _first_line(exc))
                continue
            return bool(row and row[0])
        self._drop()
        return False

    def still_held(self) -> bool:
        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            # The lock is on this session; the session is this connection.
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1",
                (_high(self.key), _low(self.key)),
            ).fetchone()
        except psycopg.Error as exc:
            log.warning("leader lease: lost %s (%s)", self._where, _first_line(exc))
            return False
        return bool(row and row[0])

    def release(self) -> None:
        # Closing the session releases every lock it holds; an explicit unlock first
        # hands over at once even if a pooler keeps the server session around.
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(psycopg.Error):
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        with contextlib.suppress(psycopg.Error):
            conn.close()

    def abandon(self) -> None:
        """Forgets the connection without waiting on it (after a check timed out)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            # Closing may block on a dead network; nobody waits for it.
            threading.Thread(target=conn.close, name="mercato-lease-close", daemon=True).start()

    def describe(self) -> str:
        return f"advisory lock {self.key} on {self._where}"

    def _connect(self) -> psycopg.Connection[Any]:
        seconds = max(1, round(self._timeout))
        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            application_name="mercato-leader",
            connect_timeout=seconds,
            # A leader behind a partition must notice before the server lets the lock go.
            keepalives=1,
            keepalives_idle=seconds,
            keepalives_interval=1,
            keepalives_count=3,
            tcp_user_timeout=seconds * 1000,
        )

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


class FileLease:
    """An exclusive `flock` on a file in the data directory (one machine).

    Args:
        path: The lock file (created 0600 if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    def abandon(self) -> None:
        self.release()

    def describe(self) -> str:
        return f"file lock {self.path}"


def lease_for(
    index_url: str | None,
    data_dir: Path,
    chain_id: int,
    marketplace: str,
    accounts: Sequence[str] = (),
) -> Lease:
    """The lease the replicas of one node compete for.

    Args:
        index_url: The index's URL; None (SQLite in the data directory) or a SQLite URL
            gives a file lock in the data directory.
        data_dir: The node's data directory.
        chain_id: The deployment's chain.
        marketplace: The deployment's marketplace address.
        accounts: The addresses the node sells from (its replicas share them).

    Returns:
        A `PostgresLease` for a PostgreSQL index, else a `FileLease`.

    Raises:
        IndexDatabaseError: The URL is malformed.
    """
    if index_url is not None and _backend(index_url) == "postgresql":
        return PostgresLease(index_url, lock_key(chain_id, marketplace, accounts))
    name = _identity(chain_id, marketplace, accounts)[:8].hex()
    return FileLease(data_dir / LOCK_DIR / f"{name}.lock")


class Leadership:
    """Competes for a lease in a thread; runs `on_elected` when this replica takes it
    and `on_demoted` when it loses or gives it up.

    `on_demoted` always finishes before the lease is released on purpose, so the next
    leader starts only after this one has stopped its duties.

    Args:
        lease: What the replicas compete for.
        on_elected: Starts the leader's duties (called from the election thread).
        on_demoted: Stops them and waits until they have stopped.
        duties_ok: Whether the duties still run; a leader whose duties died (an index
            follower stopped by an error it cannot get past) gives the lease up, so
            another replica, or this one after `retry` seconds, starts them afresh.
        retry: Seconds between a follower's attempts.
        check_every: Seconds between the leader's checks.
        check_timeout: A check not answered within this counts as a lost lease.
    """

    def __init__(
        self,
        lease: Lease,
        on_elected: Callable[[], None],
        on_demoted: Callable[[], None],
        *,
        duties_ok: Callable[[], bool] | None = None,
        retry: float = RETRY_SECONDS,
        check_every: float = CHECK_SECONDS,
        check_timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self.lease = lease
        self._on_elected = on_elected
        self._on_demoted = on_demoted
        self._duties_ok = duties_ok
        self._retry = retry
        self._check_every = check_every
        self._check_timeout = check_timeout
        self._stop = threading.Event()
        self._leading = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this replica follows the chain and runs the agent now."""
        return self._leading.is_set()

    def start(self) -> None:
        """Starts competing (the first attempt runs at once, in the thread)."""
        self._thread = threading.Thread(target=self._run, name="mercato-leader", daemon=True)
        self._thread.start()

    def wait_until_settled(self, timeout: float) -> bool:
        """Waits up to `timeout` seconds for this replica to lead; True when it does."""
        return self._leading.wait(timeout)

    def stop(self) -> None:
        """Stops the duties if leading, gives the lease up and ends the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._leading.is_set():
                    if self._acquire():
                        self._elected()
                    else:
                        self._stop.wait(self._retry)
                    continue
                self._stop.wait(self._check_every)
                if self._stop.is_set():
                    break
                if not self._checked():
                    log.warning(
                        "leader: lost the %s; stopping the index follower and the agent",
                        self.lease.describe(),
                    )
                    self._demote()
                    self.lease.abandon()
                    # A replica whose connection just failed lets a healthier one go first.
                    self._stop.wait(self._retry)
                elif self._duties_ok is not None and not self._duties_ok():
                    log.warning(
                        "leader: the index follower or the agent stopped; giving the %s up",
                        self.lease.describe(),
                    )
                    self._demote()
                    self.lease.release()
                    self._stop.wait(self._retry)
        finally:
            if self._leading.is_set():
                self._demote()
            self.lease.release()

    def _acquire(self) -> bool:
        try:
            return self.lease.try_acquire()
        except (OSError, IndexDatabaseError) as exc:
            log.warning("leader: cannot take the %s (%s)", self.lease.describe(), exc)
            return False

    def _elected(self) -> None:
        self._leading.set()
        log.info("leader: this replica now follows the chain and runs the agent")
        try:
            self._on_elected()
        except Exception:
            # A leader that cannot do its duties must not keep others from doing them.
            log.exception("leader: the duties failed to start; giving the lease up")
            self._demote()
            self.lease.release()
            self._stop.wait(self._retry)

    def _demote(self) -> None:
        self._leading.clear()
        try:
            self._on_demoted()
        except Exception:
            log.exception("leader: stopping the duties failed")
        log.info("leader: this replica now only serves reads and try calls")

    def _checked(self) -> bool:
        """`lease.still_held()` under a deadline measured here: on a partitioned network
        the query never fails, it just never answers."""
        answer: list[bool] = []

        def check() -> None:
            answer.append(self.lease.still_held())

        worker = threading.Thread(target=check, name="mercato-lease-check", daemon=True)
        worker.start()
        worker.join(self._check_timeout)
        return bool(answer and answer[0])


def _backend(url: str) -> str:
    try:
        return make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise IndexDatabaseError(f"The index database URL {url!r} is malformed ({exc}).") from exc


def _conninfo(url: str) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL URL (query options kept)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise IndexDatabaseError(f"The index database URL {url!r} is malformed ({exc}).") from exc
    if parsed.get_backend_name() != "postgresql":
        raise IndexDatabaseError(
            f"A leader lease on PostgreSQL needs a postgresql:// URL, not {_where(url)!r}."
        )
    parts: dict[str, Any] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
    }
    for name, value in parsed.query.items():
        parts[name] = value if isinstance(value, str) else value[-1]
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in parts.items() if v is not None})


def _where(url: str) -> str:
    """The URL without its password, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the index database"


def _high(key: int) -> int:
    return (key >> 32) & 0xFFFF_FFFF  # pg_locks.classid of a bigint key


def _low(key: int) -> int:
    return key & 0xFFFF_FFFF  # pg_locks.objid


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class LeaderDuties:
    """What only the leader runs: the index follower and, when the node sells, the agent.

    Args:
        state: The gateway's shared state; its `follower` is set while leading, so
            pages cache between index changes only while this replica writes them.
        agent: Builds a fresh seller's agent (it reads what is pending on-chain when it
            starts, so a new leader delivers what the old one left); None sells nothing.
    """

    def __init__(self, state: GatewayState, agent: Callable[[], SellerAgent] | None) -> None:
        self._state = state
        self._new_agent = agent
        self._agent_stop = threading.Event()
        self._agent_thread: threading.Thread | None = None
        self._follower: IndexFollower | None = None

    def start(self) -> None:
        """Starts following the chain and delivering."""
        follower = IndexFollower(self._state.index, self._state.market)
        follower.start()
        self._follower = follower
        self._state.follower = follower
        if self._new_agent is not None:
            agent = self._new_agent()
            stop = self._agent_stop = threading.Event()
            self._agent_thread = threading.Thread(
                target=lambda: agent.run(stop), name="mercato-agent", daemon=True
            )
            self._agent_thread.start()

    def running(self) -> bool:
        """Whether the index follower and the agent (when the node sells) still run."""
        follower, agent = self._follower, self._agent_thread
        if follower is None or not follower.alive:
            return False
        return self._new_agent is None or (agent is not None and agent.is_alive())

    def stop(self) -> None:
        """Stops both and waits for them (an agent round in flight ends first)."""
        self._agent_stop.set()
        thread, self._agent_thread = self._agent_thread, None
        if thread is not None:
            thread.join(timeout=60)
            if thread.is_alive():
                log.warning("leader: the agent's round is still running after 60 s")
        follower, self._follower = self._follower, None
        self._state.follower = None
        if follower is not None:
            follower.stop()
