"""Processes the benchmark drives: the sink, measured subprocesses, and the machine facts.

Everything here is bounded: each wait has a timeout, each child is killed by its own
process group id when it overruns, and the sink dies when the harness closes its stdin.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import platform
import queue
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import trustme

__all__ = ["Measured", "Sink", "byte_compile", "machine", "make_certs", "run_measured"]

HERE = Path(__file__).resolve().parent


def make_certs(folder: Path) -> tuple[Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1; returns (ca.pem, server.pem)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem, server_pem = folder / "ca.pem", folder / "server.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    return ca_pem, server_pem


def byte_compile(root: Path) -> bool:
    """Write the .pyc files of the ``mailbatch`` package under ``root``, as installing it
    does. Start-up counts in every mailbatch row, and a checkout run with
    PYTHONDONTWRITEBYTECODE set (as on the development VM) would otherwise compile every
    module from source on every run: some 60 ms of each, which no installed copy pays."""
    package = root / "mailbatch"
    return package.is_dir() and bool(compileall.compile_dir(str(package), quiet=1))


class Sink:
    """The sink process and its control pipe: reset and read counters between runs."""

    def __init__(self, server_pem: Path, log: Path, mode: str = "mta") -> None:
        self._log = log.open("w")
        self.mode = mode
        self.host = "127.0.0.1"
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "sinkserver.py"), "--cert", str(server_pem),
             "--key", str(server_pem), "--mode", mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        self.port = int(json.loads(self._next_line(15.0))["port"])

    def _pump(self, stream: IO[str]) -> None:
        """Read the sink's stdout on a thread, so every wait for a reply can time out."""
        for line in stream:
            self._lines.put(line)
        self._lines.put("")

    def _next_line(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"sink did not answer within {timeout:.0f}s") from None
        if not line:
            raise RuntimeError(f"sink exited (code {self.proc.poll()}); see {self._log.name}")
        return line

    def _ask(self, command: str) -> dict[str, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return dict(json.loads(self._next_line(15.0)))

    def reset(self) -> None:
        self._ask("reset")

    def stats(self) -> dict[str, int]:
        return self._ask("stats")

    def cpu_seconds(self) -> float:
        """User + system CPU the sink has used, to show it is not the bottleneck."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


@dataclass(frozen=True)
class Measured:
    """One finished child: exit status, wall time, CPU time, own peak RSS (None if unknown)."""

    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss_kib: int | None
    stdout: str
    stderr: str
    timed_out: bool

    def tail(self, lines: int = 3) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " | ".join(text[-lines:])


def run_measured(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
                 peak_rss: bool = False) -> Measured:
    """Run ``python [peak_rss.py FILE] -m ...args`` with a hard timeout.

    With ``peak_rss`` the child goes through ``peak_rss.py``, which reports its own VmHWM;
    ``ru_maxrss`` from ``wait4`` would include this harness's memory (see peak_rss.py).
    """
    with tempfile.TemporaryDirectory(prefix="mailbatch-bench-") as tmp:
        rss_file = Path(tmp) / "peak_rss"
        prefix = [str(HERE / "peak_rss.py"), str(rss_file)] if peak_rss else []
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out.open("wb") as out_fh, err.open("wb") as err_fh:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, *prefix, "-m", *args], cwd=cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=out_fh, stderr=err_fh, start_new_session=True,
            )
            expired = threading.Event()

            def kill() -> None:
                expired.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own group: nothing else

            timer = threading.Timer(timeout, kill)
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:  # interrupted harness: take the child down with it
                kill()
                proc.wait()
                raise
            finally:
                timer.cancel()
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        rss = int(rss_file.read_text()) if rss_file.exists() else None
        return Measured(
            returncode=proc.returncode, seconds=seconds,
            cpu_seconds=usage.ru_utime + usage.ru_stime, peak_rss_kib=rss,
            stdout=out.read_text(errors="replace"), stderr=err.read_text(errors="replace"),
            timed_out=expired.is_set(),
        )


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
              if line.startswith("model name")]
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem = next((line.split()[1] for line in meminfo.splitlines()
                if line.startswith("MemTotal:")), "0")
    return {
        "cpu": models[0] if models else platform.processor() or "unknown",
        "cores": f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable",
        "memory": f"{int(mem) / 1024 / 1024:.1f} GiB",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "openssl": ssl.OPENSSL_VERSION,
        "os": platform.platform(),
    }
