"""A restart forgets nothing a monitor needs: each job's last run is read back at start."""

from __future__ import annotations

import datetime as dt
import json
import logging

from mailbatch.service.scheduler import Service
from tests.clock import FakeClock
from tests.scheduled import ServiceProcess, runs_seen, write_scheduled


def test_the_last_run_survives_a_restart_so_a_monitor_still_sees_the_failure(
        jobs, tmp_path, smtp_server, ca_file, password_env):
    status_file = tmp_path / "state" / "status.json"
    write_scheduled(jobs, "broken", smtp_server, ca_file, "every 1 second",
                    text="Hello {{ no_such_field }}")
    write_scheduled(jobs, "fine", smtp_server, ca_file, "every 1 second")
    seen: dict[str, set[str]] = {}
    with ServiceProcess([jobs], status_file) as first:
        first.status(lambda s: runs_seen(s, "broken", seen) >= 1 and
                     runs_seen(s, "fine", seen) >= 1)
        assert first.stop() == 0
    before = {j["name"]: j["last_run"] for j in json.loads(status_file.read_text())["jobs"]}
    later = (dt.datetime.now() + dt.timedelta(hours=12)).strftime("%H:%M")
    for name in ("broken", "fine"):  # nothing is due for hours after the restart
        write_scheduled(jobs, name, smtp_server, ca_file, f"every day at {later}",
                        text="Hello {{ no_such_field }}" if name == "broken" else "Hi")
    with ServiceProcess([jobs], status_file) as second:
        after = second.status(lambda s: s["service"]["state"] == "running")
        assert second.stop() == 0
    assert {j["name"]: j["last_run"] for j in after["jobs"]} == before
    assert (before["broken"]["result"], before["broken"]["exit_code"]) == ("failed", 65)
    assert before["fine"]["result"] == "ok"


def test_an_unreadable_previous_status_is_a_warning_and_the_service_starts(
        jobs, tmp_path, smtp_server, ca_file, caplog):
    status_file = tmp_path / "status.json"
    status_file.write_text('{"jobs": [{"file": 1}, "nonsense", {"file": "x", "last_run": 5}')
    write_scheduled(jobs, "fine", smtp_server, ca_file)
    with caplog.at_level(logging.WARNING, logger="mailbatch.service"):
        service = Service([jobs], status_file=status_file,
                          clock=FakeClock(dt.datetime(2026, 6, 3, 10, 0, tzinfo=dt.UTC)))
        service.load()
    assert "cannot read the previous status" in caplog.text
    assert json.loads(status_file.read_text())["jobs"][0]["last_run"] is None


def test_a_previous_status_with_odd_entries_keeps_what_it_can(jobs, tmp_path, smtp_server,
                                                              ca_file):
    path = write_scheduled(jobs, "fine", smtp_server, ca_file)
    good = {"started": "2026-06-01T08:00:00+00:00", "finished": "2026-06-01T08:00:05+00:00",
            "result": "partial", "exit_code": 1, "summary": "fine: 1 sent, 1 refused",
            "report": None}
    status_file = tmp_path / "status.json"
    status_file.write_text(json.dumps({"jobs": [
        {"file": 1}, "nonsense", {"file": str(jobs / "gone.yaml"), "last_run": good},
        {"file": str(path), "last_run": good, "notified": {"2026-06-01": "exit 1", "x": 2}}]}))
    service = Service([jobs], status_file=status_file,
                      clock=FakeClock(dt.datetime(2026, 6, 3, 10, 0, tzinfo=dt.UTC)))
    service.load()
    [job] = json.loads(status_file.read_text())["jobs"]
    assert job["last_run"] == good
    assert job["notified"] == {"2026-06-01": "exit 1"}
