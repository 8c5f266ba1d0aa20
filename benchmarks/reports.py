"""Workload R: report mails as issue 15 measured them, against the MTA-like sink and a real MTA.

Each message: text + HTML from the templates, a PDF of its own (per recipient) and a PNG
shared by all. 200 and 2,000 of them, and four contenders on the same messages: the plain
smtplib loop (prebuilt, one session, TCP_NODELAY, one command at a time: the reference of the
targets), the pipelined wire limit, and ``mailbatch run`` with its defaults and with
``smtp.pipelining: false``. Start-up counts for mailbatch: its time is the whole command.

The real MTA is opt-in, from the environment (see ``Server.from_env``); it must also say
how to count what the server delivered (``MAILBATCH_MTA_COUNT``), or nothing can be checked.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path

import clients
from results import WIRE, WIRE_PIPELINED
from workload import FROM, PASSWORD_ENV, REGIONS, SUBJECT, TEMPLATES, Workdir, make_pdf
from workload import _sales as sales_tables

__all__ = ["MtaTarget", "Server", "make_reports_workdir", "run_reports"]

PDF_BYTES = 40 * 1024  # per recipient
PNG_BYTES = 20 * 1024  # shared
NOPIPE = "mailbatch, pipelining: false"


@dataclass(frozen=True)
class Server:
    """Where the contenders send: the benchmark's sink, or a real MTA named by the environment."""

    name: str
    host: str
    port: int
    user: str
    password: str
    ca_file: Path
    domain: str = "example.com"  # recipients are user000001@DOMAIN
    reset: str | None = None  # a command that empties the server's store before each run
    count: str | None = None  # a command that prints how many messages it has delivered

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Server | None:
        """The MTA of ``MAILBATCH_MTA_HOST`` & co., or None when the variable is not set."""
        env = os.environ if environ is None else environ
        host = env.get("MAILBATCH_MTA_HOST")
        if not host:
            return None
        return cls(name="mta", host=host, port=int(env.get("MAILBATCH_MTA_PORT", "465")),
                   user=env["MAILBATCH_MTA_USER"], password=env["MAILBATCH_MTA_PASSWORD"],
                   ca_file=Path(env["MAILBATCH_MTA_CA_FILE"]),
                   domain=env.get("MAILBATCH_MTA_DOMAIN", "example.test"),
                   reset=env.get("MAILBATCH_MTA_RESET"), count=env.get("MAILBATCH_MTA_COUNT"))


class MtaTarget:
    """A real MTA in the role of the sink: reset before a run, count after it (waiting until
    its queue has delivered everything: the count stops changing)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.host, self.port = server.host, server.port
        self._baseline = 0

    def reset(self) -> None:
        if self.server.reset:
            subprocess.run(shlex.split(self.server.reset), check=True, capture_output=True,
                           timeout=120)
        self._baseline = self._count()

    def _count(self) -> int:
        if not self.server.count:
            return 0
        done = subprocess.run(shlex.split(self.server.count), check=True, text=True,
                              capture_output=True, timeout=120)
        return int(done.stdout.split()[-1])

    def stats(self) -> dict[str, int]:
        last, stable_since, deadline = -1, time.monotonic(), time.monotonic() + 120
        while time.monotonic() < deadline:
            now = self._count()
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= 1.0:
                break
            time.sleep(0.2)
        return {"messages": last - self._baseline, "bytes": 0}

    def cpu_seconds(self) -> float:
        return 0.0  # not known for a server of its own


def make_reports_workdir(root: Path, count: int, server: Server, pipelining: bool = True,
                         seed: int = 15) -> tuple[Workdir, Workdir]:
    """A job folder of ``count`` report mails for ``server``; two job files in it, defaults
    and ``pipelining: false``, returned as Workdirs (same recipients and files)."""
    if root.exists():
        shutil.rmtree(root)
    (root / "templates").mkdir(parents=True)
    (root / "pdfs").mkdir()
    for template in TEMPLATES.glob("*.j2"):
        shutil.copyfile(template, root / "templates" / template.name)
    shutil.copyfile(server.ca_file, root / "ca.pem")
    rng = random.Random(seed)
    (root / "sales.json").write_text(json.dumps(sales_tables(rng), indent=1))
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.randbytes(PNG_BYTES - 8))
    with (root / "recipients.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "region"])
        for i in range(count):
            address = f"user{i:06d}@{server.domain}"
            writer.writerow([address, f"Person {i}", REGIONS[(i * 7 + i // 3) % len(REGIONS)]])
            (root / "pdfs" / f"{address}.pdf").write_bytes(make_pdf(PDF_BYTES, seed=i))
    works = []
    for name, pipelined in (("job.yaml", True), ("job-nopipe.yaml", False)):
        (root / name).write_text(_job_yaml(server, pipelined))
        works.append(Workdir(root, root / name, root / "recipients.csv", root / "sales.json",
                             None, count))
    return works[0], works[1]


def _job_yaml(server: Server, pipelining: bool) -> str:
    return (
        "smtp:\n"
        f"  host: {server.host}\n"
        f"  port: {server.port}\n"
        f"  username: {json.dumps(server.user)}\n"
        f"  password_env: {PASSWORD_ENV}\n"
        "  ca_file: ca.pem\n"
        "  timeout: 30\n"
        + ("" if pipelining else "  pipelining: false\n")
        + f'from: "{FROM}"\n'
        f'subject: "{SUBJECT}"\n'
        "text_template: templates/report.txt.j2\n"
        "html_template: templates/report.html.j2\n"
        "recipients: recipients.csv\n"
        "data:\n"
        "  sales: sales.json\n"
        "attachments:\n"
        "  - pdfs/{{ recipient_address }}.pdf\n"
        "  - logo.png\n"
        "report: out/report\n"
        "outbox: out/outbox\n"
        "state_dir: out/state\n"
    )


def prebuild(work: Workdir, pool: int) -> list[tuple[str, bytes]]:
    """The smtplib loop's messages: the same templates and files, built with EmailMessage
    ahead of time (outside the timed runs), ``pool`` distinct ones sent round-robin."""
    renderer = clients.Renderer(work)
    png = (work.root / "logo.png").read_bytes()
    rows = clients.recipients(work, pool)
    built = []
    for row in rows:
        context = {**row, "data": renderer.data}
        msg = EmailMessage()
        msg["From"] = FROM
        msg["To"] = formataddr((row["name"], row["email"]))
        msg["Subject"] = renderer.subject.render(context)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain="example.com")
        msg.set_content(renderer.text.render(context))
        msg.add_alternative(renderer.html.render(context), subtype="html")
        pdf = (work.root / "pdfs" / f"{row['email']}.pdf").read_bytes()
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="report.pdf")
        msg.add_attachment(png, maintype="image", subtype="png", filename="logo.png")
        built.append((row["email"], msg.as_bytes(policy=SMTP)))
    return built


def run_reports(bench, target_name: str, server: Server, sizes: tuple[int, ...], reps: int,
                work_root: Path, pool: int = 100) -> None:
    """All four contenders on each size, alternating order, ``reps`` rounds."""
    bench.env = {**bench.env, PASSWORD_ENV: server.password}
    for size in sizes:
        _one_size(bench, f"R{size} {target_name}", server, size, reps,
                  work_root / f"R{size}-{target_name}", pool)


def _one_size(bench, workload: str, server: Server, size: int, reps: int, root: Path,
              pool: int) -> None:
    print(f"workload {workload}: {size:,} report mails (text + HTML, a PDF each, a shared "
          f"PNG) to {server.host}:{server.port}")
    work, nopipe = make_reports_workdir(root, size, server)
    prebuilt = prebuild(work, min(pool, size))
    wire = [(to, prebuilt[i % len(prebuilt)][1]) for i, to in enumerate(clients.addresses(work))]
    stuffed = [(to, clients.dot_stuffed(data)) for to, data in wire]
    login = clients.Login(server.host, server.user, server.password)
    contenders = [
        (WIRE, lambda: bench.in_process(workload, WIRE, size, lambda: clients.wire_limit(
            wire, server.port, bench.ctx, bench.budget, login=login))),
        (WIRE_PIPELINED, lambda: bench.in_process(
            workload, WIRE_PIPELINED, size, lambda: clients.wire_limit_pipelined(
                stuffed, server.port, bench.ctx, bench.budget, login=login))),
        ("mailbatch", lambda: bench.mailbatch(work, workload)),
        (NOPIPE, lambda: bench.mailbatch(nopipe, workload, NOPIPE)),
    ]
    for rep in range(reps):
        shift = rep % len(contenders)
        for label, run in contenders[shift:] + contenders[:shift]:
            result = run()
            bench.results.runs.append(result)
            status = "ok" if result.valid else f"INVALID ({result.error})"
            print(f"  {workload} rep {rep + 1}/{reps} {label:<30} {result.count:>6,} msgs "
                  f"{result.seconds:7.2f} s  {status}", flush=True)
    for label, _ in contenders:
        bench.results.summarise(workload, label, "start-up included" if label in (
            "mailbatch", NOPIPE) else "prebuilt messages; connect and login included")
    bench.results.ratios(workload)
    shutil.rmtree(work.root, ignore_errors=True)
