"""Runs in, medians, ratios and the printed/Markdown tables out.

A run whose sink count differs from what was sent is invalid and never enters a median.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["NAIVE", "PER_MESSAGE", "WIRE", "WIRE_PIPELINED", "Results", "Row", "Run"]

NAIVE = "naive loop"
WIRE = "wire limit"
WIRE_PIPELINED = "wire limit, pipelined"
PER_MESSAGE = "per-message loop"


@dataclass
class Run:
    """One timed run of one contender."""

    workload: str
    contender: str
    count: int  # messages this run had to deliver (or write, for a dry run)
    valid: bool
    seconds: float
    client_cpu: float = 0.0  # CPU seconds of the client (harness or child process)
    sink_cpu: float = 0.0  # CPU seconds of the sink during the run
    peak_rss_kib: int | None = None
    kib_per_message: float | None = None  # as the sink (or the outbox) saw them
    error: str = ""
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Row:
    """The summary of one contender on one workload."""

    workload: str
    contender: str
    count: int
    valid_runs: int
    runs: int
    median_s: float | None
    rate: float | None
    vs_naive: float | None = None
    vs_wire: float | None = None
    client_cpu_pct: float | None = None
    sink_cpu_pct: float | None = None
    peak_rss_mib: float | None = None
    kib_per_message: float | None = None
    note: str = ""


class Results:
    """Collects runs and rows; renders them for the terminal and for results.md."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.rows: list[Row] = []
        self.notes: list[str] = []

    def summarise(self, workload: str, contender: str, note: str = "") -> Row:
        """Median over the valid runs of one contender; a row even when none was valid."""
        runs = [r for r in self.runs if r.workload == workload and r.contender == contender]
        valid = [r for r in runs if r.valid]
        count = runs[0].count if runs else 0
        errors = sorted({r.error for r in runs if r.error})
        row = Row(workload, contender, count, len(valid), len(runs), None, None,
                  note="; ".join([note, *errors]).strip("; "))
        if valid:
            row.median_s = statistics.median(r.seconds for r in valid)
            row.rate = count / row.median_s if row.median_s > 0 else None
            row.client_cpu_pct = 100 * statistics.median(r.client_cpu / r.seconds for r in valid)
            row.sink_cpu_pct = 100 * statistics.median(r.sink_cpu / r.seconds for r in valid)
            rss = [r.peak_rss_kib for r in valid if r.peak_rss_kib is not None]
            row.peak_rss_mib = max(rss) / 1024 if rss else None
            sizes = [r.kib_per_message for r in valid if r.kib_per_message is not None]
            row.kib_per_message = statistics.median(sizes) if sizes else None
        self.rows.append(row)
        return row

    def add_row(self, row: Row) -> None:
        self.rows.append(row)

    def ratios(self, workload: str) -> None:
        """Fill vs_naive and vs_wire for every row of a throughput workload."""
        rows = [r for r in self.rows if r.workload == workload]
        naive = next((r.rate for r in rows if r.contender == NAIVE), None)
        wire = next((r.rate for r in rows if r.contender == WIRE), None)
        for row in rows:
            if row.rate is not None:
                row.vs_naive = row.rate / naive if naive else None
                row.vs_wire = row.rate / wire if wire else None
        rates = {r.contender: r.rate for r in rows if r.rate}
        if "mailbatch" in rates:
            times = [f"{rates[c] / rates['mailbatch']:.2f}x the {c}'s" for c in
                     (WIRE, WIRE_PIPELINED, PER_MESSAGE) if c in rates]
            self.notes.append(f"{workload}: mailbatch's time per message is "
                              f"{', '.join(times)}.")

    def table(self) -> str:
        """A Markdown table; it also reads well in a terminal."""
        head = ["workload", "contender", "msgs/run", "valid runs", "median s", "msg/s",
                "x naive", "x wire", "client CPU", "sink CPU", "peak RSS MiB", "KiB/msg", "note"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [
                r.workload, r.contender, f"{r.count:,}", f"{r.valid_runs}/{r.runs}",
                _num(r.median_s, "{:.2f}"), _num(r.rate, "{:,.0f}"), _num(r.vs_naive, "{:.2f}"),
                _num(r.vs_wire, "{:.2f}"), _num(r.client_cpu_pct, "{:.0f}%"),
                _num(r.sink_cpu_pct, "{:.0f}%"), _num(r.peak_rss_mib, "{:.1f}"),
                _num(r.kib_per_message, "{:.1f}"), r.note,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def markdown(self, title: str, facts: dict[str, str], legend: list[str]) -> str:
        parts = [f"# {title}", "", "## Machine", ""]
        parts += [f"- {key}: {value}" for key, value in facts.items()]
        parts += ["", "## Results", "", self.table(), "", "## Notes", ""]
        parts += [f"- {line}" for line in [*legend, *self.notes]]
        return "\n".join(parts) + "\n"

    def write(self, out: Path, title: str, facts: dict[str, str], legend: list[str]) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({
            "machine": facts, "rows": [asdict(r) for r in self.rows],
            "runs": [asdict(r) for r in self.runs], "notes": self.notes,
        }, indent=1))
        path = out / "results.md"
        path.write_text(self.markdown(title, facts, legend))
        return path


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
