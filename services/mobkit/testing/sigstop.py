"""Pausing a child process with SIGSTOP, returning only once it has stopped.

``kill(SIGSTOP)`` returns before the child stops: one of its threads must first be
scheduled to take the signal and stop the others, and until then the rest keep running.
On a busy machine an etcd was seen answering a request sent right after the kill, so a
"hung member" test got a reply. ``waitid(WSTOPPED)`` reports the child only once its
whole thread group has stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

STOP_TIMEOUT = 10.0  # bounds the wait; a stop normally completes within milliseconds


def pause_child(popen: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGSTOP ``popen``'s process and wait until none of its threads runs any more."""
    if popen.poll() is not None:
        raise RuntimeError(f"process {popen.pid} is not running")
    os.kill(popen.pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    # WNOWAIT leaves the stop report in place; only WSTOPPED, so an exit is not reaped
    # here but by popen.poll(), which keeps the return code.
    while os.waitid(os.P_PID, popen.pid, os.WSTOPPED | os.WNOHANG | os.WNOWAIT) is None:
        if popen.poll() is not None:
            raise RuntimeError(f"process {popen.pid} exited while being paused")
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {popen.pid} did not stop within {timeout}s")
        time.sleep(0.001)
