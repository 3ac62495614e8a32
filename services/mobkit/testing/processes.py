"""Run ``mobkit serve ...`` as a real child process, for crash and failover tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Self

from mobkit.testing.sigstop import pause_child

_LISTENING = re.compile(rb"listening on (\S+)")


class ServeProcess:
    """``mobkit serve SERVICE --listen 127.0.0.1:PORT ...`` in a child process.

    The first start binds port 0 and the chosen port is kept, so ``restart()``
    comes back on the same address. stderr goes to ``log_path``.
    """

    def __init__(
        self,
        service: str,
        args: Sequence[str] = (),
        *,
        log_dir: str | Path,
        env: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.service = service
        self.args = list(args)
        self.name = name or service
        self.log_path = Path(log_dir) / f"{self.name}.log"
        self.env = {**os.environ, **(env or {})}
        self.address: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self, listen: str) -> list[str]:
        return [sys.executable, "-m", "mobkit.cli", "serve", self.service, "--listen", listen]

    def start(self, timeout: float = 30.0) -> Self:
        cmd = [*self.command(self.address or "127.0.0.1:0"), *self.args]
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, env=self.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        found = threading.Event()
        assert self.proc.stderr is not None
        stream = self.proc.stderr
        log = self._log

        def pump() -> None:  # keep the pipe drained for the child's whole life
            for line in stream:
                log.write(line)
                log.flush()
                m = _LISTENING.search(line)
                if m and not found.is_set():
                    self.address = m.group(1).decode()
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} did not start; log:\n{self.log_tail()}")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP, returning once the process has stopped."""
        if self.proc is not None and self.proc.poll() is None:
            pause_child(self.proc)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (graceful shutdown); SIGKILL if it does not exit."""
        if self.proc is None:
            return None
        self.resume()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def restart(self, timeout: float = 30.0) -> Self:
        self.kill()
        return self.start(timeout)

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-max_bytes:].decode(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.resume()
        self.kill()


class UpProcess(ServeProcess):
    """``mobkit up --listen 127.0.0.1:PORT ...``: the whole suite, its own etcd included."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        log_dir: str | Path,
        env: dict[str, str] | None = None,
        name: str = "up",
    ) -> None:
        super().__init__("all", args, log_dir=log_dir, env=env, name=name)

    def command(self, listen: str) -> list[str]:
        cmd = [sys.executable, "-m", "mobkit.cli", "up", "--listen", listen]
        if "--console-listen" not in self.args:  # a free port: never another test's
            cmd += ["--console-listen", "127.0.0.1:0"]
        return cmd
