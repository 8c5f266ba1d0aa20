"""The job's ``data`` files (CSV, JSON, YAML): loaded once per run, read by every template."""

from __future__ import annotations

from typing import Any

from mailbatch.errors import JobError
from mailbatch.job.fileformats import csv_records, load_json
from mailbatch.job.model import Job
from mailbatch.job.yamlfile import load_yaml

__all__ = ["load_data"]


def load_data(job: Job) -> dict[str, Any]:
    """Load the job's ``data`` files once per run, for every template to read."""
    data: dict[str, Any] = {}
    for name, path in job.data:
        where = {"path": str(path)}
        suffix = path.suffix.lower()
        try:
            if suffix == ".csv":
                with path.open(encoding="utf-8-sig", newline="") as file:
                    data[name] = [row for _, row in csv_records(file, path)]
            elif suffix == ".json":
                data[name] = load_json(path, f"data file for {name!r}")
            else:
                data[name] = _plain(load_yaml(path))
        except FileNotFoundError:
            raise JobError(f"data file for {name!r} not found; check data.{name}",
                           **where) from None
        except UnicodeDecodeError:
            raise JobError("data file is not UTF-8; save it as UTF-8", **where) from None
        except OSError as err:
            raise JobError(f"cannot read data file: {err}", **where) from None
    return data


def _plain(value: Any) -> Any:
    """Strip the loader's line bookkeeping so templates see ordinary dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
