"""The job's ``data`` files (CSV, JSON, YAML): loaded once per run, read by every template."""

from __future__ import annotations

from typing import Any

from mailbatch.errors import JobError
from mailbatch.job.csvfiles import read_csv
from mailbatch.job.fileformats import load_json
from mailbatch.job.model import Job
from mailbatch.job.yamlfile import load_yaml

__all__ = ["load_data"]


def load_data(job: Job) -> dict[str, Any]:
    """Load the job's ``data`` files once per run, for every template to read."""
    data: dict[str, Any] = {}
    for entry in job.data:
        name, path = entry.name, entry.path
        where = str(path)
        suffix = path.suffix.lower()
        try:
            if suffix == ".csv":
                missing = f"data file for {name!r} not found; check data.{name}"
                data[name] = [row for _, row in read_csv(path, entry.csv, missing=missing)]
            elif suffix == ".json":
                data[name] = load_json(path, f"data file for {name!r}")
            else:
                data[name] = _plain(load_yaml(path))
        except FileNotFoundError:
            raise JobError(f"data file for {name!r} not found; check data.{name}",
                           path=where) from None
        except UnicodeDecodeError:
            raise JobError("data file is not UTF-8; save it as UTF-8", path=where) from None
        except OSError as err:
            raise JobError(f"cannot read data file: {err}", path=where) from None
    return data


def _plain(value: Any) -> Any:
    """Strip the loader's line bookkeeping so templates see ordinary dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
