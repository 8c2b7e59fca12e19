"""Helpers for tests of the HTTP API: ``dsfleet serve`` / ``dsfleet coordinator --http`` as subprocesses on a
free loopback port, an httpx client, waits with deadlines."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.support.brokers import free_port
from tests.support.livefleet import ROOT, stop_process, wait_for

TOKEN = "test-token-0123456789abcdef"
WEBHOOK_SECRET = "webhook-secret-abcdef"


class ServerProc:
    """``dsfleet <command> … --http 127.0.0.1:PORT`` with the token and webhook secret in its environment."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable,
            "-m",
            "dsfleet.reconciler.cli",
            *args,
            "--http",
            f"127.0.0.1:{self.port}",
        ]
        self.env = {
            **os.environ,
            "DSFLEET_API_TOKEN": TOKEN,
            "DSFLEET_API_WEBHOOK_SECRET": WEBHOOK_SECRET,
            **(env or {}),
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServerProc:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                self.args,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=ROOT,
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, "the HTTP API to answer", interval=0.05)
        return self

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        return stop_process(self.proc, timeout, "server")
