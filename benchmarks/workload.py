"""Deterministic benchmark inputs: recipients, sales data, a PDF, templates and the job file.

Every contender reads the same folder, so they render the same messages. Generation is
seeded, so two runs of the benchmark send byte-for-byte comparable mail.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FROM", "FROM_ADDR", "PASSWORD_ENV", "REGIONS", "Workdir", "make_pdf", "make_workdir",
           "report_job"]

FROM = "Sales Reports <reports@example.com>"
FROM_ADDR = "reports@example.com"
SUBJECT = "Weekly sales for {{ name }}"
PASSWORD_ENV = "MAILBATCH_BENCH_PASSWORD"
TEMPLATES = Path(__file__).with_name("templates")
REGIONS = ["North", "South", "East", "West", "Central", "Coastal", "Highlands", "Islands"]
FIRST = ["Ada", "Ben", "Chloe", "Dev", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas",
         "Kemi", "Liam", "Mei", "Noor", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tariq"]
LAST = ["Adams", "Brandt", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Haddad",
        "Ivanova", "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov"]
PRODUCTS = ["Widget", "Gadget", "Sprocket", "Gizmo", "Doohickey", "Flange", "Valve",
            "Bracket", "Sensor", "Relay"]


@dataclass(frozen=True)
class Workdir:
    """One generated job folder; paths inside match what the job file says."""

    root: Path
    job: Path
    recipients: Path
    sales: Path
    attachment: Path | None
    count: int

    @property
    def out(self) -> Path:
        return self.root / "out"


def _sales(rng: random.Random) -> dict[str, list[dict[str, object]]]:
    """Twenty rows per region, so recipients in different regions get different tables."""
    sales: dict[str, list[dict[str, object]]] = {}
    for region in REGIONS:
        rows: list[dict[str, object]] = []
        for week in range(20):
            units = rng.randint(10, 5000)
            product = f"{rng.choice(PRODUCTS)} {chr(65 + week)}{rng.randint(100, 999)}"
            rows.append({
                "product": product,
                "units": units,
                "revenue": round(units * rng.uniform(3.5, 250.0), 2),
                "margin": round(rng.uniform(-5.0, 45.0), 1),
            })
        sales[region] = rows
    return sales


def make_pdf(size: int, seed: int = 7) -> bytes:
    """A structurally plausible PDF of about ``size`` bytes, padded with a binary stream.

    The filler is pseudo-random so it does not compress: base64 encoding costs what it
    would for a real report.
    """
    rng = random.Random(seed)
    text = b"BT /F1 18 Tf 72 720 Td (Weekly sales report) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    filler = rng.randbytes(max(size - 800, 0))
    objects.append(
        b"<< /Type /XObject /Subtype /Image /Width 1 /Height 1 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Length %d >>\nstream\n%s\nendstream" % (len(filler), filler)
    )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def _job_yaml(port: int, attachment: str | None, templates: str = "report") -> str:
    attachments = f"attachments:\n  - {attachment}\n" if attachment else ""
    return (
        "smtp:\n"
        "  host: 127.0.0.1\n"
        f"  port: {port}\n"
        "  username: bench\n"
        f"  password_env: {PASSWORD_ENV}\n"
        "  ca_file: ca.pem\n"
        "  timeout: 30\n"
        f'from: "{FROM}"\n'
        f'subject: "{SUBJECT}"\n'
        f"text_template: templates/{templates}.txt.j2\n"
        f"html_template: templates/{templates}.html.j2\n"
        "recipients: recipients.csv\n"
        "data:\n"
        "  sales: sales.json\n"
        f"{attachments}"
        "report: out/report\n"
        "outbox: out/outbox\n"
        "state_dir: out/state\n"
    )


def make_workdir(
    root: Path, count: int, port: int, ca_pem: Path, attachment_size: int | None,
    attachment_name: str = "report.pdf",
) -> Workdir:
    """Write a complete job folder for ``count`` recipients; replaces any previous one."""
    if root.exists():
        shutil.rmtree(root)
    (root / "templates").mkdir(parents=True)
    for template in TEMPLATES.glob("*.j2"):
        shutil.copyfile(template, root / "templates" / template.name)
    shutil.copyfile(ca_pem, root / "ca.pem")
    rng = random.Random(20240601)
    sales = root / "sales.json"
    sales.write_text(json.dumps(_sales(rng), indent=1))
    recipients = root / "recipients.csv"
    with recipients.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "region"])
        for i in range(count):
            first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
            writer.writerow([f"user{i:06d}@example.com", f"{first} {last}",
                             REGIONS[(i * 7 + i // 3) % len(REGIONS)]])
    pdf = None
    if attachment_size is not None:
        pdf = root / attachment_name
        pdf.write_bytes(make_pdf(attachment_size))
    job = root / "job.yaml"
    job.write_text(_job_yaml(port, attachment_name if pdf else None))
    return Workdir(root, job, recipients, sales, pdf, count)


def report_job(work: Workdir, port: int) -> Workdir:
    """The same batch as ``work`` with the report features (workload D): a <style> block
    inlined, the table filter in both bodies, and one inline chart per region (drawn once
    each; without matplotlib, one prepared PNG per region, read and encoded once each)."""
    charts = work.root / "charts"
    charts.mkdir(exist_ok=True)
    for i, region in enumerate(REGIONS):
        (charts / f"{region}.png").write_bytes(_png(600, 300, (37, 99, 235 - i * 20)))
    job = work.root / "job-report.yaml"
    job.write_text(_job_yaml(port, work.attachment.name if work.attachment else None,
                             templates="report-styled"))
    return dataclasses.replace(work, job=job)


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A one-colour PNG (the stand-in for a chart when matplotlib is not installed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))
