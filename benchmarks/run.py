"""Benchmark mailbatch against the loops users write and the wire limit of one SMTP session.

Usage: ``python benchmarks/run.py [--quick] [--out benchmarks/out]``. See benchmarks/README.md.
All traffic goes to a sink on 127.0.0.1 that this script starts and stops.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from harness import Sink, byte_compile, machine, make_certs
from phases import MAILBATCH, QUICK, Bench, Sizes
from reports import MtaTarget, Server, run_reports
from results import WIRE, Results
from sink import MODES, PASSWORD, USER
from workload import make_workdir, report_job

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

LEGEND = [
    "naive loop: one smtplib.SMTP_SSL session; per recipient an EmailMessage (Jinja text + "
    "HTML, add_attachment of the PDF read once) and send_message; default socket options.",
    "per-message loop: the same, with a new SMTP_SSL connection, TLS handshake and login for "
    "every message (one client SSLContext, created once).",
    "wire limit: the same kind of messages, prebuilt with EmailMessage and serialised with "
    "policy=email.policy.SMTP, sent with smtp.sendmail() over one session with TCP_NODELAY: "
    "the most an smtplib client can do against this sink.",
    "wire limit, no TCP_NODELAY: the same loop with default socket options (Nagle on).",
    "R: report mails (text + HTML, a PDF per recipient, a PNG shared), 200 and 2,000; the "
    "wire limit there is the plain smtplib loop the targets of issue 15 compare with; "
    "mailbatch runs with its defaults and with smtp.pipelining: false, start-up included.",
    "The sink behaves on TCP like the common MTAs unless --sink fast: Nagle on, at most 4 KiB "
    "of a TLS record read at a time, the replies gathered so far written before each read, as "
    "Postfix does.",
    "wire limit, pipelined: the same prebuilt messages with PIPELINING (RFC 2920), which "
    "smtplib cannot do: MAIL, RCPT and DATA in one write, then the message, its \".\" and the "
    "next message's MAIL, RCPT and DATA in another; the most any client can do here.",
    "mailbatch: `python -m mailbatch run job.yaml` in a subprocess, wall time including "
    "interpreter start-up (see the start-up row), fresh state dir per run.",
    "Rates are messages per second over the median of the valid runs; x naive and x wire are "
    "rate ratios against the naive loop and the wire limit of the same workload.",
    "client CPU: CPU time of the sending process over wall time; sink CPU: the same for the "
    "sink process. Neither near 100% means the session is bound by round trips.",
    "Peak RSS: VmHWM of the mailbatch process itself, written by benchmarks/peak_rss.py "
    "(ru_maxrss would include the harness's memory, which Linux carries across fork+exec), "
    "plus its render worker's peak from RUSAGE_CHILDREN (an upper bound).",
    "Every run is checked: the sink's count of accepted messages must equal the count sent "
    "(zero for a dry run, where the outbox must hold one .eml per recipient).",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and one round: a smoke run for tests (well under 30 s)")
    parser.add_argument("--out", type=Path, default=HERE / "out",
                        help="results and scratch folder (default benchmarks/out)")
    parser.add_argument("--only", default="ABCDR",
                        help="workloads to run, e.g. AB (default ABCDR; R also runs against "
                             "the MTA of MAILBATCH_MTA_HOST when that is set)")
    parser.add_argument("--sink", choices=MODES, default="mta",
                        help="mta: the sink behaves on TCP like Postfix (Nagle on, replies "
                             "written as Postfix writes them; default); fast: the first sink")
    parser.add_argument("--reps", type=int, help="rounds per throughput workload (default 3)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the recipient counts of A, B and C (subsets stay as "
                             "they are, capped at the new count), e.g. 0.1 for a faster look")
    parser.add_argument("--repeat-under", type=float, default=90.0,
                        help="repeat a contender only if its first run took fewer seconds "
                             "(default 90)")
    parser.add_argument("--mailbatch-path", type=Path, default=REPO,
                        help="folder put first on PYTHONPATH to import mailbatch from "
                             "(default: this checkout; an installed mailbatch comes after it)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the generated job folders under OUT/work")
    return parser.parse_args(argv)


def choose_sizes(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else Sizes()
    if args.scale != 1.0:
        a, b = (max(10, round(n * args.scale)) for n in (sizes.a, sizes.b))
        subsets = {f.name: min(getattr(sizes, f.name), a if f.name[0] == "a" else b)
                   for f in dataclasses.fields(sizes) if f.name[:2] in ("a_", "b_")}
        sizes = dataclasses.replace(
            sizes, a=a, b=b, **subsets,
            c_dry=tuple(max(10, round(n * args.scale)) for n in sizes.c_dry),
            c_big=max(2, round(sizes.c_big * args.scale)),
            d=max(10, round(sizes.d * args.scale)))
    if args.reps is not None:
        sizes = dataclasses.replace(sizes, reps=max(1, args.reps))
    return sizes


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the sink and any mailbatch child are stopped."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    sizes = choose_sizes(args)
    out: Path = args.out.resolve()
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    facts = machine()
    for key, value in facts.items():
        print(f"{key:>8}: {value}")
    ca_pem, server_pem = make_certs(work / "certs")
    compiled = byte_compile(args.mailbatch_path.resolve())
    results = Results()
    sink = Sink(server_pem, out / "sink.log", args.sink)
    try:
        bench = Bench(sink, ca_pem, results, args.mailbatch_path.resolve(),
                      budget=30.0 if args.quick else 300.0, repeat_under=args.repeat_under)
        bench.probe_mailbatch(sizes.startup_runs)
        if bench.mailbatch_error is not None:
            print(f"mailbatch: not available ({bench.mailbatch_error})")
        run_workloads(bench, sizes, work, ca_pem, args.only.upper())
        if "R" in args.only.upper():
            reps = 1 if args.quick else sizes.reps
            report_sizes = (20, 50) if args.quick else R_SIZES
            run_reports(bench, "sink", Server("sink", "127.0.0.1", sink.port, USER, PASSWORD,
                                              ca_pem), report_sizes, reps, work)
            run_mta(args, results, report_sizes, reps, work)
        for row in results.rows:
            if row.workload.endswith(" mta"):
                continue  # the MTA's CPU is not measured
            if row.contender == WIRE and row.rate is not None and row.sink_cpu_pct is not None:
                results.notes.append(
                    f"sink: {row.rate:,.0f} msg/s from the wire-limit client on {row.workload} "
                    f"({row.kib_per_message or 0:,.1f} KiB each) with the sink at "
                    f"{row.sink_cpu_pct:.0f}% of a core"
                    + (": not the bottleneck" if row.sink_cpu_pct < 80 else ": near its limit"))
    finally:
        sink.close()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    facts = {**facts, "mode": "quick" if args.quick else f"full, scale {args.scale:g}",
             "sink": args.sink + (" (Nagle on, replies written as Postfix writes them)"
                                  if args.sink == "mta" else " (TCP_NODELAY)"),
             "MTA": _mta_fact(),
             "mailbatch": "byte-compiled before the runs, as installing it does"
             if compiled else "not byte-compiled (compileall failed): start-up includes it",
             "rounds": str(sizes.reps), "benchmark wall time": f"{elapsed:.0f} s"}
    path = results.write(out, "mailbatch benchmark", facts, LEGEND)
    print()
    print(results.table())
    for note in results.notes:
        print(f"note: {note}")
    print(f"\nwrote {path} in {elapsed:.0f} s")
    return 0


def run_workloads(bench: Bench, s: Sizes, work: Path, ca_pem: Path, only: str) -> None:
    port = bench.sink.port
    if "A" in only:
        print(f"workload A: {s.a:,} recipients, text + HTML, {s.pdf_bytes // 1024} KiB PDF")
        job = make_workdir(work / "A", s.a, port, ca_pem, s.pdf_bytes)
        bench.throughput("A", job, s.reps, s.a_naive, s.a_per_message, s.a_wire,
                         s.a_wire_default, s.a_wire_pipelined, s.a_pool)
    if "B" in only:
        print(f"workload B: {s.b:,} recipients, text + HTML, no attachment")
        job = make_workdir(work / "B", s.b, port, ca_pem, None)
        bench.throughput("B", job, s.reps, s.b_naive, s.b_per_message, s.b_wire,
                         s.b_wire_default, s.b_wire_pipelined, s.b_pool)
    if "C" in only:
        for n in s.c_dry:
            print(f"workload C: {MAILBATCH} --dry-run, {n:,} recipients "
                  f"(outbox about {n * 7 / 1024:,.0f} MiB of .eml files, removed after)")
            ram = ram_folder(n * DRY_RUN_BYTES)
            root = (ram or work) / f"C-dry-{n}"
            try:
                job = make_workdir(root, n, port, ca_pem, None)
                bench.memory(f"mailbatch --dry-run {n:,}", job, dry_run=True, tmpdir=ram)
            finally:
                shutil.rmtree(ram or root, ignore_errors=True)
        big = s.c_big_bytes / 1024 / 1024
        print(f"workload C: {MAILBATCH} run, {s.c_big:,} recipients sharing one {big:g} MiB PDF")
        job = make_workdir(work / "C-big", s.c_big, port, ca_pem, s.c_big_bytes)
        bench.memory(f"mailbatch run {s.c_big:,} x {big:g} MiB", job, dry_run=False,
                     seconds_per_message=2.0)
        shutil.rmtree(job.root, ignore_errors=True)
    if "D" in only:
        charts = importlib.util.find_spec("matplotlib") is not None
        print(f"workload D: {s.d:,} recipients as in A, without and with the report features "
              f"({'charts drawn' if charts else 'no matplotlib: a prepared PNG per region'})")
        plain = make_workdir(work / "D", s.d, port, ca_pem, s.pdf_bytes)
        bench.features(plain, report_job(plain, port), s.reps, charts)


R_SIZES = (200, 2_000)


def run_mta(args: argparse.Namespace, results: Results, sizes: tuple[int, ...], reps: int,
            work: Path) -> None:
    """Workload R against the real MTA the environment names (opt-in)."""
    server = Server.from_env()
    if server is None:
        results.notes.append("R against a real MTA: not run (MAILBATCH_MTA_HOST is not set)")
        return
    if not server.count:
        results.notes.append("R against a real MTA: not run: MAILBATCH_MTA_COUNT (a command "
                             "printing how many messages it delivered) is needed to check runs")
        return
    bench = Bench(MtaTarget(server), server.ca_file, results,  # type: ignore[arg-type]
                  args.mailbatch_path.resolve(), budget=600.0,
                  repeat_under=args.repeat_under)
    bench.scratch = work  # a neutral cwd for python -m, not the MTA's folder
    run_reports(bench, "mta", server, sizes, reps, work)


def _mta_fact() -> str:
    server = Server.from_env()
    return "none" if server is None else f"{server.host}:{server.port} (MAILBATCH_MTA_HOST)"


RAM_FS = Path("/dev/shm")
DRY_RUN_BYTES = 24 * 1024  # per message: the .eml, the spooled copy, the journal row


def ram_folder(need: int) -> Path | None:
    """A new folder on a RAM file system with room for ``need`` bytes, or None.

    C measures memory, not the disk: creating 100,000 small files took 0.07-0.5 ms each on
    the development VM's disk (a third of the dry run, and the most variable part), so C's
    dry runs keep their job folder, outbox, journal and spool in RAM where there is room.
    tmpfs pages are not part of any process's resident set.
    """
    try:
        if shutil.disk_usage(RAM_FS).free < 2 * need:
            return None
        return Path(tempfile.mkdtemp(prefix="mailbatch-bench-", dir=RAM_FS))
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
