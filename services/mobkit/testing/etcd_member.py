"""An etcd process that failure tests can also hang: :class:`EtcdMember` adds pause
(SIGSTOP: the member stops answering with its connections open, no RST to clients)
and resume to :class:`~mobkit.etcd.process.EtcdProcess`, which keeps only what
``mobkit up`` needs (start, health, restart, stop)."""

from __future__ import annotations

import signal
import subprocess

from mobkit.etcd.process import EtcdProcess
from mobkit.testing.sigstop import pause_child


class EtcdMember(EtcdProcess):
    _paused_pid: int | None = None  # the process that was paused, if still paused

    @property
    def paused(self) -> bool:
        return self.running and self._paused_pid is not None and self._paused_pid == self.pid

    def pause(self) -> None:
        """SIGSTOP: the member hangs with its connections open. Returns once every etcd
        thread has stopped, so no request sent afterwards is answered until
        :meth:`resume`."""
        popen = self._running_popen()
        self._paused_pid = popen.pid  # set first: stop() must SIGCONT even if the wait fails
        pause_child(popen)

    def resume(self) -> None:
        popen = self._running_popen()
        popen.send_signal(signal.SIGCONT)
        self._paused_pid = None

    def stop(self, timeout: float = 5.0) -> None:
        """As :meth:`EtcdProcess.stop`; a paused member is resumed first, or it could
        not act on SIGTERM."""
        if self.paused:
            self.resume()
        super().stop(timeout)

    def _running_popen(self) -> subprocess.Popen[bytes]:
        if not self.running or self._popen is None:
            raise RuntimeError(f"etcd {self.name} is not running")
        return self._popen
