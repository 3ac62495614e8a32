"""Keep the etcd that ``mobkit up`` started running.

When the child exits (killed, crashed, out of memory), it is reaped at once (no
defunct process is left), one line is logged, and it is started again on the same
data dir and ports. Failed starts are retried with exponential backoff (from
``backoff_min`` up to ``backoff_max`` seconds); an etcd that dies again soon after
a restart waits longer before the next one, and one that ran for ``stable_after``
seconds starts over from ``backoff_min``. Recovery is logged too. ``on_change`` is
called on each death and each recovery (``mobkit up`` asks its etcd status watch
to look at once, which turns health, ``mobkit status`` and the event log).

Nothing acknowledged is lost by a restart: etcd fsyncs every write before it
answers, and the data dir is the one the dead member used.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from mobkit.etcd.background import Background
from mobkit.etcd.process import EtcdProcess, EtcdStartError

log = logging.getLogger("mobkit.etcd.supervisor")


def describe_exit(status: int) -> str:
    """``killed by SIGKILL`` or ``exited with status 1``."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


def _nothing() -> None:
    return None


class EtcdSupervisor(Background):
    task_name = "etcd-supervisor"

    def __init__(
        self,
        etcd: EtcdProcess,
        *,
        on_change: Callable[[], None] = _nothing,
        backoff_min: float = 0.5,
        backoff_max: float = 10.0,
        stable_after: float = 30.0,
    ) -> None:
        self.etcd = etcd
        self._on_change = on_change
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.restarts = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.backoff_min
        while True:
            started = loop.time()
            pid = self.etcd.pid
            status = await self.etcd.wait_exit_async()
            lost = loop.time()
            if lost - started >= self.stable_after:
                delay = self.backoff_min
            log.error(
                "etcd (pid %s) %s; restarting it in %.1f s", pid, describe_exit(status), delay
            )
            self._on_change()
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                try:
                    await self.etcd.restart_async(graceful=False)
                    break
                except EtcdStartError as exc:
                    reason = str(exc).splitlines()[0]
                    log.error(
                        "etcd did not start again (%s); next attempt in %.1f s", reason, delay
                    )
            self.restarts += 1
            log.warning(
                "etcd is back (pid %s, %s), %.1f s after it was lost",
                self.etcd.pid,
                self.etcd.endpoint,
                loop.time() - lost,
            )
            self._on_change()
