# SPDX-License-Identifier: AGPL-3.0-only
"""Child processes that do not outlive the process that started them.

Anvil, the SuperLink and a data owner's SuperNode are separate programs. Each runs in
its own session (a terminal's Ctrl-C reaches the node alone, which stops them in order),
so nothing would stop them if the node died outright (SIGKILL, a crash): an orphan
Anvil blocks the next start on its port; an orphan SuperNode keeps training on a data
owner's file for a coordinator after its owner's `mercato` is gone. On Linux the kernel
sends each of them SIGTERM when the thread that started it exits
(`PR_SET_PDEATHSIG`); start them from a thread that lives as long as the node (the main
thread does).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` making the child receive SIGTERM when its parent dies (Linux only;
    None elsewhere).

    Everything it needs is looked up here, before the fork: between fork and exec the
    child may only make plain system calls.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    parent = os.getpid()
    term = int(signal.SIGTERM)

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, term, 0, 0, 0)
        # The parent may have died before prctl ran: then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    return set_parent_death_signal


def stop_own_group_at_exit() -> None:
    """When this process leads a process group, SIGTERM the rest of it at exit.

    The parent-death signal reaches only the direct child: a SuperNode told to stop
    that way exits, but the flwr-clientapp processes it started would run on. Called
    at the start of the SuperNode and SuperLink wrappers; runs on any exit Python
    handles (Flower's SIGTERM handler exits through `sys.exit`).
    """
    if os.getpgrp() != os.getpid():
        return

    def stop_group() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the signal reaches us too
        with contextlib.suppress(OSError):  # nothing else is left in the group
            os.killpg(os.getpid(), signal.SIGTERM)

    atexit.register(stop_group)
