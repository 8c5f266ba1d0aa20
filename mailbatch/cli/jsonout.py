"""What ``run --json`` prints: the run's outcome as one JSON object on stdout (shape in the
README), for programs that start mailbatch; people read the summary line on stderr instead.

Written as ASCII (``\\u`` escapes), so no terminal or pipe encoding can make printing it fail.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from mailbatch.batch.report import Report

__all__ = ["print_json", "run_document"]


def run_document(report: Report, exit_code: int, report_error: str | None = None
                 ) -> dict[str, Any]:
    """The report's metadata (the head of its JSON file), where its files are, and how the
    command ends: ``error`` is None unless the run stopped early, ``exit_code`` is its code."""
    return {**report.metadata(),
            "report": str(report.json_path) if report.json_path else None,
            "report_csv": str(report.csv_path) if report.csv_path else None,
            "report_error": report_error, "exit_code": exit_code}


def print_json(document: dict[str, Any], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write(json.dumps(document, indent=2) + "\n")
    out.flush()
