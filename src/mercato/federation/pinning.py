# SPDX-License-Identifier: AGPL-3.0-only
"""A SuperNode runs Mercato's own app and nothing else.

Flower ships an app (a FAB: a zip of a `pyproject.toml` and code) from the SuperLink to
each SuperNode, which then runs it: a requester could send any code to the data owners'
machines. Flower's own app verification needs a SuperLink that signs licences, which an
open-source SuperLink does not. So the SuperNode Mercato starts (`python -m
mercato.federation.pinning ...`, same flags as `flower-supernode`) checks every FAB it
receives against the app shipped in the installed mercato package, file by file
(sha256), before anything of it runs; any other FAB is refused and never reaches the
ClientApp runner. Mercato's app is only a `pyproject.toml` naming modules of the
installed package, so the code that runs is the code the data owner installed.

`python -m mercato.federation.pinning superlink ...` (same flags as `flower-superlink`)
is the coordinator's SuperLink with the same widened windows (`superlink_main`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import sys
import zipfile
from collections.abc import Callable, Iterator
from logging import ERROR
from pathlib import Path
from typing import Any

from mercato.errors import FederationAppRefusedError
from mercato.processes import stop_own_group_at_exit

APP_DIR = Path(__file__).parent / "app"
_MANIFEST = ".info/CONTENT"


def fab_files_digest(files: dict[str, bytes]) -> str:
    """One sha256 over the sorted (path, sha256 of content) pairs of an app's files."""
    lines = sorted(f"{path},{hashlib.sha256(data).hexdigest()}" for path, data in files.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def build_app_fab() -> bytes:
    """Build the FAB of the app shipped in this package (what the coordinator runs)."""
    from flwr.cli.build import build_fab_from_disk

    return build_fab_from_disk(APP_DIR)


def expected_digest() -> str:
    """The pinned digest: that of the shipped app's FAB files."""
    return fab_digest(build_app_fab())


def fab_digest(fab: bytes) -> str:
    """The digest of a FAB's files (its manifest excluded: it only lists the others).

    Raises:
        FederationAppRefusedError: the bytes are not a readable zip.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(fab)) as archive:
            files = {
                name: archive.read(name)
                for name in archive.namelist()
                if name != _MANIFEST and not name.endswith("/")
            }
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FederationAppRefusedError(hashlib.sha256(fab).hexdigest(), "a Flower app") from exc
    return fab_files_digest(files)


def check_fab(fab: bytes, expected: str) -> None:
    """Raise unless `fab` holds exactly the shipped app's files.

    Raises:
        FederationAppRefusedError: any file added, removed or changed.
    """
    got = fab_digest(fab)
    if got != expected:
        raise FederationAppRefusedError(got, expected)


def _pinned_connection(original: Callable[..., Any], expected: str) -> Callable[..., Any]:
    @contextlib.contextmanager
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with original(*args, **kwargs) as conn:
            conn = list(conn)
            get_fab = conn[4]

            def checked_get_fab(fab_hash: str, run_id: int) -> Any:
                fab = get_fab(fab_hash, run_id)
                check_fab(fab.content, expected)
                return fab

            conn[4] = checked_get_fab
            yield tuple(conn)

    return wrapper


# Seconds a ClientApp process gets to start and claim its task (Flower's own: 30).
TASK_START_SECONDS = 120


def patient_task_tokens(seconds: int = TASK_START_SECONDS) -> None:
    """Give each ClientApp process `seconds` to start before Flower hands its task to another.

    Flower's SuperNode runs every message in a fresh `flwr-clientapp` process whose task
    token must be used within HEARTBEAT_DEFAULT_INTERVAL (30 s) of being claimed, or the
    task goes back to pending and another process is started for it; the late one is then
    refused (401, "task-token authentication failed"). Importing Mercato's app (Flower,
    scikit-learn, ONNX) takes about 4 s of CPU; with 8 SuperNodes on 2 cores, or any
    other load, starts take longer than 30 s, each node starts a new process every 30 s,
    the load grows with them and no round ever finishes. The window lives in the
    SuperNode's own state (this process), so it is widened here.
    """
    from flwr.supercore.corestate import in_memory_corestate, sql_corestate

    for module in (in_memory_corestate, sql_corestate):
        # Each module reads the name it imported from flwr.common.constant at call time.
        current = int(getattr(module, "HEARTBEAT_DEFAULT_INTERVAL"))  # noqa: B009
        setattr(module, "HEARTBEAT_DEFAULT_INTERVAL", max(current, seconds))  # noqa: B010


# Milliseconds a SuperLink's SQLite connection waits for a lock (Flower's own: 5000).
SQLITE_BUSY_MS = 60_000


def patient_sqlite(busy_ms: int = SQLITE_BUSY_MS) -> None:
    """Let every SQLite connection Flower opens wait `busy_ms` for a lock, not 5 s.

    The SuperLink keeps its state in one SQLite file that its Fleet, Runtime and Control
    APIs write from several threads; with 8 SuperNodes on a loaded 2-core machine a
    writer held the lock longer than Flower's 5 s `busy_timeout`, the other got
    "database is locked", the API answered 500 and once flower-superexec exited. Flower
    sets its pragmas on each new connection from `sql_mixin.SQLITE_PRAGMAS`, read at
    connect time, so the value is widened there.
    """
    from flwr.supercore import sql_mixin

    sql_mixin.SQLITE_PRAGMAS = tuple(  # type: ignore[assignment]
        (name, str(max(int(value), busy_ms)) if name == "busy_timeout" else value)
        for name, value in sql_mixin.SQLITE_PRAGMAS
    )


def superlink_main(argv: list[str] | None = None) -> None:
    """`flower-superlink` with the same patient windows as Mercato's SuperNode.

    The SuperLink's ServerApp process claims its run's task token in the SuperLink's own
    state, with the same 30 s window as a ClientApp (`patient_task_tokens`): under load
    the token expired, Flower marked the run finished and refused the nodes' replies
    ("Run is finished"). Its SQLite state gets a longer busy timeout (`patient_sqlite`).
    flower-superexec is kept in this process's group (Flower detaches it into a session
    of its own) so that stopping the group stops it and the ServerApp it started.
    """
    # The package re-exports a function under the module's name: import the module.
    module = importlib.import_module("flwr.superlink.cli.flower_superlink")

    stop_own_group_at_exit()
    patient_task_tokens()
    patient_sqlite()
    setattr(module, "get_popen_detach_kwargs", dict)  # noqa: B010
    sys.argv = ["flower-superlink", *(sys.argv[1:] if argv is None else argv)]
    module.flower_superlink()


def main(argv: list[str] | None = None) -> None:
    """`flower-supernode` with every received app checked against the pinned one."""
    from flwr.supercore.logger import log as flwr_log
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli.flower_supernode import flower_supernode

    stop_own_group_at_exit()
    patient_task_tokens()
    expected = expected_digest()
    original = start_client_internal._init_connection
    start_client_internal._init_connection = _pinned_connection(original, expected)
    # A refused app raises in the pull step; log it in words before Flower's own handler.
    pull = start_client_internal._pull_and_store_message

    def logged_pull(*args: Any, **kwargs: Any) -> Any:
        try:
            return pull(*args, **kwargs)
        except FederationAppRefusedError as exc:
            flwr_log(ERROR, "REFUSED: %s", exc)
            return None

    start_client_internal._pull_and_store_message = logged_pull
    sys.argv = ["flower-supernode", *(sys.argv[1:] if argv is None else argv)]
    flower_supernode()


if __name__ == "__main__":
    # `python -m mercato.federation.pinning superlink ...` starts the SuperLink.
    if sys.argv[1:2] == ["superlink"]:
        superlink_main(sys.argv[2:])
    else:
        main()
