"""The processes a benchmark drives: CPU pinning, servers on loopback ports, and their memory."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import requests


def cpu_plan() -> tuple[list[str], list[str], str]:
    """Command prefixes that pin the server and the load generator to different CPUs, and a note saying what was done."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2 and shutil.which("taskset"):
        server, client = str(cpus[0]), str(cpus[1])
        return (["taskset", "-c", server], ["taskset", "-c", client],
                f"server on CPU {server}, load generator on CPU {client} (taskset)")
    return [], [], f"not pinned ({len(cpus)} CPU(s) usable or no taskset)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server process in its own process group, answering ``health_path`` on a free loopback port."""

    def __init__(self, name: str, command: Sequence[str], log: Path, health: str, *, env: dict[str, str] | None = None,
                 cwd: Path | None = None, boot_seconds: float = 120.0):
        self.name = name
        self.log = log
        self.url = health.rsplit("/", 1)[0]
        self.handle = open(log, "ab")
        self.process = subprocess.Popen(list(command), stdout=self.handle, stderr=subprocess.STDOUT, cwd=cwd,
                                        env={**os.environ, **(env or {})}, start_new_session=True)
        deadline = time.monotonic() + boot_seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.process.returncode}; see {log}")
            try:
                if requests.get(health, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not answer {health} within {boot_seconds:g} s; see {log}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(10)
        self.handle.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples the resident memory of a process tree five times a second; keeps the peak of the sum and of each process."""

    def __init__(self, root: int):
        self.root = root
        self.peak_total_kib = 0
        self.peak_by_pid: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in process_tree(self.root):
                rss = _status_kib(pid, "VmRSS")
                total += rss
                hwm = _status_kib(pid, "VmHWM")
                try:
                    name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80]
                except OSError:
                    name = "?"
                if hwm > self.peak_by_pid.get(pid, ("", 0))[1]:
                    self.peak_by_pid[pid] = (name, hwm)
            self.peak_total_kib = max(self.peak_total_kib, total)
            self._stop.wait(0.2)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_for(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``probe`` until it returns something truthy; return that (RuntimeError after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
