"""The workloads: which contender runs what, in which order, and how each run is checked.

Every run is followed by a read of the sink's counter; a run is valid only when the sink
accepted exactly the messages the run had to send (zero for a dry run).
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import clients
from harness import Sink, run_measured
from results import NAIVE, PER_MESSAGE, WIRE, WIRE_PIPELINED, Results, Row, Run
from sink import PASSWORD
from workload import PASSWORD_ENV, Workdir

__all__ = ["MAILBATCH", "PLAIN", "REPORT", "REPORT_COLD", "Bench", "Sizes"]

MAILBATCH = "mailbatch"
PLAIN = "mailbatch, plain (A's job)"  # workload D: the same batch without report features...
REPORT = "mailbatch, report, charts cached"  # ...with them, charts drawn by an earlier check
REPORT_COLD = "mailbatch, report, charts drawn"  # ...and with every chart drawn in the run
WIRE_DEFAULT = "wire limit, no TCP_NODELAY"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    """Recipient counts; subsets are where a slow contender runs on fewer messages."""

    a: int = 2_000
    a_naive: int = 30
    a_per_message: int = 40
    a_wire: int = 1_000
    a_wire_default: int = 30
    a_wire_pipelined: int = 1_000
    a_pool: int = 100  # distinct prebuilt wire messages, reused round-robin
    b: int = 20_000
    b_naive: int = 250
    b_per_message: int = 120
    b_wire: int = 5_000
    b_wire_default: int = 1_000
    b_wire_pipelined: int = 2_500
    b_pool: int = 250
    c_dry: tuple[int, ...] = (10_000, 100_000)
    c_big: int = 1_000
    c_big_bytes: int = 20 * MIB
    d: int = 2_000
    pdf_bytes: int = 100 * 1024
    reps: int = 3
    startup_runs: int = 10


QUICK = Sizes(a=50, a_naive=50, a_per_message=10, a_wire=50, a_wire_default=20,
              a_wire_pipelined=50, a_pool=50, b=50, b_naive=50, b_per_message=10, b_wire=50,
              b_wire_default=50, b_wire_pipelined=50, b_pool=50, c_dry=(50, 100),
              c_big=5, c_big_bytes=1 * MIB, d=50, reps=1, startup_runs=3)


class Bench:
    """Shared state of one benchmark run: the sink, the client TLS context, the results."""

    def __init__(self, sink: Sink, ca_pem: Path, results: Results, mailbatch_path: Path,
                 budget: float, repeat_under: float) -> None:
        self.scratch = ca_pem.parent  # a neutral cwd: python -m would import from the cwd
        self.sink = sink
        self.ctx = clients.client_context(ca_pem)
        self.results = results
        self.budget = budget  # seconds any single in-process run may take
        self.repeat_under = repeat_under  # a contender whose first run took longer runs once
        self.env = {**os.environ, PASSWORD_ENV: PASSWORD,
                    "PYTHONPATH": os.pathsep.join(
                        p for p in [str(mailbatch_path), os.environ.get("PYTHONPATH")] if p)}
        self.mailbatch_error: str | None = None

    # -- mailbatch as a subprocess --------------------------------------------------------

    def probe_mailbatch(self, runs: int) -> None:
        """Is the CLI there? If so, record its start-up time and start-up peak RSS."""
        first = run_measured(["mailbatch", "--help"], cwd=self.scratch, env=self.env, timeout=60)
        if first.returncode != 0:
            self.mailbatch_error = first.tail(1) or f"exit code {first.returncode}"
            self.results.notes.append(f"mailbatch: not available ({self.mailbatch_error})")
            self.results.add_row(Row("start-up", "python -m mailbatch --help", 0, 0, 1, None,
                                     None, note="mailbatch: not available"))
            return
        times = [run_measured(["mailbatch", "--help"], cwd=self.scratch, env=self.env,
                              timeout=60).seconds for _ in range(runs)]
        rss = run_measured(["mailbatch", "--help"], cwd=self.scratch, env=self.env, timeout=60,
                           peak_rss=True).peak_rss_kib
        median = statistics.median(times)
        self.results.add_row(Row(
            "start-up", "python -m mailbatch --help", 0, runs, runs, median, None,
            peak_rss_mib=rss / 1024 if rss else None,
            note=f"median of {runs}; min {min(times):.3f} s, max {max(times):.3f} s"))

    def mailbatch(self, work: Workdir, workload: str, label: str = MAILBATCH,
                  dry_run: bool = False, seconds_per_message: float = 0.05,
                  tmpdir: Path | None = None, extra_env: dict[str, str] | None = None) -> Run:
        """One ``python -m mailbatch run job.yaml`` with a fresh state dir, outbox and report;
        ``tmpdir`` is its TMPDIR (where a dry run keeps its journal and spool)."""
        shutil.rmtree(work.out, ignore_errors=True)
        if self.mailbatch_error is not None:
            return Run(workload, label, work.count, False, 0.0, error="not available")
        args = ["mailbatch", "run", work.job.name, *(["--dry-run"] if dry_run else [])]
        self.sink.reset()
        sink_cpu = self.sink.cpu_seconds()
        env = self.env if tmpdir is None else {**self.env, "TMPDIR": str(tmpdir)}
        env = {**env, **(extra_env or {})}
        done = run_measured(args, cwd=work.root, env=env, peak_rss=True,
                            timeout=60 + work.count * seconds_per_message)
        sink_cpu = self.sink.cpu_seconds() - sink_cpu
        stats = self.sink.stats()
        accepted, kib = stats["messages"], _kib(stats["bytes"], stats["messages"])
        expected = 0 if dry_run else work.count
        errors = []
        if done.timed_out:
            errors.append("timed out")
        elif done.returncode != 0:
            errors.append(f"exit {done.returncode}: {done.tail(1)}")
        if accepted != expected:
            errors.append(f"sink got {accepted}, expected {expected}")
        extra: dict[str, object] = {}
        if dry_run:
            files, size, blocks = outbox_usage(work.out / "outbox")
            extra = {"eml_files": files, "outbox_bytes": size, "outbox_disk_bytes": blocks}
            kib = _kib(size, files)
            if files != work.count:
                errors.append(f"outbox has {files} .eml files, expected {work.count}")
            shutil.rmtree(work.out / "outbox", ignore_errors=True)
        elif done.returncode == 0 and not (work.out / "report.json").exists():
            extra["report"] = "out/report.json missing"
        return Run(workload, label, work.count, not errors, done.seconds, done.cpu_seconds,
                   sink_cpu, done.peak_rss_kib, kib, "; ".join(errors), extra)

    # -- in-process contenders ------------------------------------------------------------

    def in_process(self, workload: str, label: str, count: int,
                   send: Callable[[], clients.Outcome]) -> Run:
        """Time one in-process contender and check the sink's count against what it sent."""
        self.sink.reset()
        sink_cpu, cpu = self.sink.cpu_seconds(), time.process_time()
        start = time.perf_counter()
        error = ""
        try:
            outcome = send()
        except Exception as err:  # a broken run is a result, not a crash of the benchmark
            outcome = clients.Outcome(0, time.perf_counter() - start)
            error = f"{type(err).__name__}: {err}"
        cpu = time.process_time() - cpu
        sink_cpu = self.sink.cpu_seconds() - sink_cpu
        stats = self.sink.stats()
        accepted = stats["messages"]
        if not error and outcome.sent != count:
            error = f"sent {outcome.sent} of {count} within {self.budget:.0f}s"
        if not error and accepted != count:
            error = f"sink got {accepted}, expected {count}"
        return Run(workload, label, count, not error, outcome.seconds, cpu, sink_cpu,
                   kib_per_message=_kib(stats["bytes"], accepted), error=error)

    def throughput(self, workload: str, work: Workdir, reps: int, naive_n: int,
                   per_message_n: int, wire_n: int, wire_default_n: int, pipelined_n: int,
                   pool: int) -> None:
        """Workloads A and B: all contenders, alternating, ``reps`` rounds."""
        started = time.perf_counter()
        prebuilt = clients.prebuild(work, pool)
        wire = [(to, prebuilt[i % len(prebuilt)][1])
                for i, to in enumerate(clients.addresses(work))]
        stuffed = [clients.dot_stuffed(data) for _, data in prebuilt]
        wire_stuffed = [(to, stuffed[i % len(stuffed)]) for i, (to, _) in enumerate(wire)]
        self.results.notes.append(
            f"{workload}: prebuilt {len(prebuilt):,} distinct wire messages in "
            f"{time.perf_counter() - started:.1f} s (outside the timed runs); the wire-limit "
            f"loops send them round-robin, each recipient its own envelope.")
        port = self.sink.port
        contenders: list[tuple[str, int, Callable[[], Run]]] = [
            (NAIVE, naive_n, lambda: self.in_process(workload, NAIVE, naive_n, lambda: (
                clients.naive_loop(work, port, self.ctx, naive_n, self.budget)))),
            (PER_MESSAGE, per_message_n, lambda: self.in_process(
                workload, PER_MESSAGE, per_message_n, lambda: clients.per_message_loop(
                    work, port, self.ctx, per_message_n, self.budget))),
            (WIRE, wire_n, lambda: self.in_process(workload, WIRE, wire_n, lambda: (
                clients.wire_limit(wire[:wire_n], port, self.ctx, self.budget)))),
            (WIRE_DEFAULT, wire_default_n, lambda: self.in_process(
                workload, WIRE_DEFAULT, wire_default_n, lambda: clients.wire_limit(
                    wire[:wire_default_n], port, self.ctx, self.budget, nodelay=False))),
            (WIRE_PIPELINED, pipelined_n, lambda: self.in_process(
                workload, WIRE_PIPELINED, pipelined_n, lambda: clients.wire_limit_pipelined(
                    wire_stuffed[:pipelined_n], port, self.ctx, self.budget))),
            (MAILBATCH, work.count, lambda: self.mailbatch(work, workload)),
        ]
        first: dict[str, float] = {}
        for rep in range(reps):
            shift = rep % len(contenders)  # alternate the order so no contender is always first
            for label, _, run in contenders[shift:] + contenders[:shift]:
                if label == MAILBATCH and self._mailbatch_failed(workload):
                    continue
                if first.get(label, 0.0) > self.repeat_under:
                    continue  # too slow to repeat within the time budget
                result = run()
                first.setdefault(label, result.seconds)
                self.results.runs.append(result)
                status = "ok" if result.valid else f"INVALID ({result.error})"
                print(f"  {workload} rep {rep + 1}/{reps} {label:<28} {result.count:>7,} msgs "
                      f"{result.seconds:8.2f} s  {status}", flush=True)
        for label, n, _ in contenders:
            notes = [f"subset of {n:,}, rate per message"] if n != work.count else []
            if reps > 1 and first.get(label, 0.0) > self.repeat_under:
                notes.append(f"run once: the first run took {first[label]:.0f} s "
                             f"(> {self.repeat_under:.0f} s)")
            note = "; ".join(notes)
            if label == MAILBATCH and self.mailbatch_error is not None:
                self.results.add_row(Row(workload, MAILBATCH, work.count, 0, 0, None, None,
                                         note="mailbatch: not available"))
                continue
            self.results.summarise(workload, label, note)
        self.results.ratios(workload)

    def features(self, plain: Workdir, report: Workdir, reps: int, charts: bool) -> None:
        """Workload D: the same batch without and with the report features (CSS inlining,
        the table filter, an inline chart per region), alternating, ``reps`` rounds each.
        With the features twice: the charts drawn by an earlier ``mailbatch check`` of the
        job (in the chart cache, as after check, preview or a dry run), and drawn in the run
        itself (an empty cache)."""
        warm, cold = plain.root / "chart-cache", plain.root / "chart-cache-empty"
        check = run_measured(["mailbatch", "check", report.job.name], cwd=report.root,
                             env={**self.env, "MAILBATCH_CACHE_DIR": str(warm)}, timeout=300)
        if check.returncode != 0:
            self.results.notes.append(f"D: mailbatch check failed: {check.tail(1)}")
        runs = {PLAIN: (plain, {}), REPORT: (report, {"MAILBATCH_CACHE_DIR": str(warm)}),
                REPORT_COLD: (report, {"MAILBATCH_CACHE_DIR": str(cold)})}
        for rep in range(reps):
            order = list(runs) if rep % 2 == 0 else list(reversed(runs))
            for label in order:
                if any(not r.valid for r in self.results.runs
                       if r.workload == "D" and r.contender == label):
                    continue  # it failed once: it would fail alike
                shutil.rmtree(cold, ignore_errors=True)
                work, env = runs[label]
                result = self.mailbatch(work, "D", label, extra_env=env)
                self.results.runs.append(result)
                status = "ok" if result.valid else f"INVALID ({result.error})"
                print(f"  D rep {rep + 1}/{reps} {label:<33} {result.count:>7,} msgs "
                      f"{result.seconds:8.2f} s  {status}", flush=True)
        what = ("a <style> block inlined, the table filter in text and HTML, one chart per "
                "region inline" if charts else
                "a <style> block inlined, the table filter in text and HTML, one prepared "
                "PNG per region inline (matplotlib is not installed: no chart drawn)")
        rows = [self.results.summarise("D", PLAIN, "A's templates, PDF and recipients"),
                self.results.summarise("D", REPORT, f"{what}; the 8 charts in the cache"),
                self.results.summarise("D", REPORT_COLD, f"{what}; the 8 charts drawn in the "
                                                         "run (empty cache)")]
        base = rows[0].median_s
        for row in rows[1:]:
            if base and row.median_s:
                self.results.notes.append(
                    f"D: {row.contender}: {row.median_s / base:.2f}x the time of the same "
                    f"batch without the features ({row.median_s:.2f} s against {base:.2f} s "
                    f"for {plain.count:,} messages; target 1.5x with the charts cached).")

    def _mailbatch_failed(self, workload: str) -> bool:
        """After one failed mailbatch run, skip its remaining rounds: they would fail alike."""
        return self.mailbatch_error is not None or any(
            not r.valid for r in self.results.runs
            if r.workload == workload and r.contender == MAILBATCH)

    def memory(self, label: str, work: Workdir, dry_run: bool,
               seconds_per_message: float = 0.05, tmpdir: Path | None = None) -> Run:
        """Workload C: one measured mailbatch run; the row carries its peak RSS."""
        result = self.mailbatch(work, "C", label, dry_run, seconds_per_message, tmpdir)
        self.results.runs.append(result)
        note = ""
        if self.mailbatch_error is not None:
            note = "mailbatch: not available"
        elif dry_run and result.extra:
            disk = int(str(result.extra.get("outbox_disk_bytes", 0))) / MIB
            note = f"outbox {result.extra.get('eml_files')} .eml files, {disk:,.1f} MiB " + (
                "in RAM (tmpfs), journal and spool too" if tmpdir else "on disk")
        if result.extra.get("report"):
            note = f"{note}; {result.extra['report']}".strip("; ")
        if self.mailbatch_error is None:
            self.results.summarise("C", label, note)
        else:
            self.results.add_row(Row("C", label, work.count, 0, 0, None, None, note=note))
        return result


def _kib(size: int, messages: int) -> float | None:
    return size / messages / 1024 if messages else None


def outbox_usage(outbox: Path) -> tuple[int, int, int]:
    """(.eml files, bytes, bytes allocated on disk) under the outbox, recursively."""
    files = size = blocks = 0
    if not outbox.exists():
        return 0, 0, 0
    for dirpath, _, names in os.walk(outbox):
        for name in names:
            if name.endswith(".eml"):
                st = os.stat(os.path.join(dirpath, name))
                files += 1
                size += st.st_size
                blocks += st.st_blocks * 512
    return files, size, blocks
