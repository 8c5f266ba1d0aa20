"""The render pass on two cores gives exactly what one process gives, in the same order."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbatch.batch.journal import Journal
from mailbatch.batch.runner import prepare
from mailbatch.errors import RenderError
from mailbatch.job.model import load_job
from mailbatch.job.recipients import iter_recipients
from mailbatch.message.render import Renderer
from mailbatch.message.renderpool import CHUNK, START_AT, RenderPool, Result
from tests.helpers import write_job

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
MANY = START_AT + CHUNK * 4 + 17  # several chunks for the worker, and a partial last one


def job_with(tmp_path: Path, count: int, broken: set[int] = frozenset()) -> Path:
    """Recipients with a region each; the ones in ``broken`` lack the region column's value
    and the template needs it."""
    rows = ["email,name,region"]
    for i in range(count):
        rows.append(f"p{i}@example.org,Person {i},{'' if i in broken else f'r{i % 5}'}")
    return write_job(tmp_path, """\
        from: reports@example.org
        subject: "Figures for {{ name }}"
        text_template: body.txt
        html_template: body.html
        recipients: people.csv
        smtp: {host: 127.0.0.1}
        """, {
        "people.csv": "\n".join(rows) + "\n",
        "body.txt": "{% if not region %}{{ missing_value }}{% endif %}"
                    "{% for i in range(5) %}{{ region }} row {{ i }}\n{% endfor %}",
        "body.html": "<p>{{ name }} &amp; {{ region }}</p>\n",
    })


def renderer_for(job_path: Path) -> Renderer:
    return Renderer(load_job(job_path), NOW)


def render_pass(renderer: Renderer, *, worker: bool) -> tuple[list[Result], int]:
    """Every recipient through a RenderPool, keeping every other one; returns the results
    and how many the worker rendered."""
    results: list[Result] = []
    with RenderPool(renderer, worker=worker) as pool:
        for n, recipient in enumerate(iter_recipients(renderer.job)):
            results += pool.add(recipient, keep=n % 2 == 0)
        results += pool.finish()
    return results, pool.by_worker


def test_a_large_batch_rendered_on_two_cores_matches_one_process_message_for_message(
        tmp_path):
    job = job_with(tmp_path, MANY)

    alone, _ = render_pass(renderer_for(job), worker=False)
    shared, by_worker = render_pass(renderer_for(job), worker=True)

    assert CHUNK <= by_worker < MANY  # both rendered: the parent alone until the worker started
    assert shared == alone
    assert [r.index for r, _, _ in shared] == list(range(MANY))
    assert [keep for _, _, keep in shared] == [n % 2 == 0 for n in range(MANY)]


def test_render_failures_from_the_worker_keep_their_place_in_the_list(tmp_path):
    broken = {3, START_AT + 5, START_AT + CHUNK * 2 + 1, MANY - 1}
    job = job_with(tmp_path, MANY, broken)

    alone, _ = render_pass(renderer_for(job), worker=False)
    shared, by_worker = render_pass(renderer_for(job), worker=True)

    assert by_worker > 0
    assert shared == alone
    failed = [r.index for r, message, _ in shared if isinstance(message, str)]
    assert failed == sorted(broken)
    assert "missing_value" in next(m for _, m, _ in shared if isinstance(m, str))


def test_a_template_changed_after_the_batch_began_is_not_mixed_into_it(tmp_path, caplog):
    job_path = job_with(tmp_path, MANY)
    renderer = renderer_for(job_path)  # reads the templates now
    (tmp_path / "body.txt").write_text("a new version\n")  # before the worker reads them

    with caplog.at_level(logging.WARNING):
        results, by_worker = render_pass(renderer, worker=True)

    assert by_worker == 0
    assert all(message.text and "row 4" in message.text for _, message, _ in results)
    assert "changed while the batch was being rendered" in caplog.text


def test_an_included_template_changed_during_the_batch_is_not_mixed_into_it(tmp_path, caplog):
    job_path = job_with(tmp_path, MANY)
    (tmp_path / "body.html").write_text("<p>{{ name }}</p>{% include 'footer.html' %}\n")
    (tmp_path / "footer.html").write_text("<p>first footer</p>")
    renderer = renderer_for(job_path)  # reads the templates now, the included one too
    (tmp_path / "footer.html").write_text("<p>second footer</p>")  # before the worker reads it

    with caplog.at_level(logging.WARNING):
        results, by_worker = render_pass(renderer, worker=True)

    assert by_worker == 0  # the worker read the second footer: its results are not used
    assert "changed while the batch was being rendered" in caplog.text
    assert all(message.html and "first footer" in message.html for _, message, _ in results)


def test_a_worker_that_dies_leaves_the_rest_to_the_parent(tmp_path):
    job = load_job(job_with(tmp_path, MANY))
    renderer = Renderer(job, NOW)
    results: list[Result] = []

    with RenderPool(renderer, worker=True) as pool:
        for recipient in iter_recipients(job):
            results += pool.add(recipient)
            if pool._worker is not None:
                pool._worker.proc.kill()
        results += pool.finish()

    assert pool.by_worker == 0
    assert [r.index for r, _, _ in results] == list(range(MANY))
    assert not any(isinstance(message, str) for _, message, _ in results)


@pytest.mark.parametrize("count", [10, MANY])
def test_failures_are_listed_in_recipient_order_whichever_process_found_them(tmp_path, count):
    job_path = job_with(tmp_path, count, broken={2, count - 3})
    people = tmp_path / "people.csv"  # the first person listed again, near the end
    people.write_text(people.read_text() + "p0@example.org,Again,r1\n")
    job = load_job(job_path)

    with Journal(tmp_path / "journal.sqlite") as journal, pytest.raises(RenderError) as raised:
        prepare(job, Renderer(job, NOW), journal, journal.batch("b")[0])

    lines = str(raised.value).splitlines()[1:]  # "people.csv:LINE ..." (line 1: the header)
    assert [line.split(":")[1].split()[0] for line in lines] == [
        "4", str(count - 1), str(count + 2)]


def test_a_batch_too_small_to_wait_for_a_worker_starts_none(tmp_path):
    job = load_job(job_with(tmp_path, START_AT))
    results: list[Result] = []

    with RenderPool(Renderer(job, NOW)) as pool:
        for recipient in iter_recipients(job):
            results += pool.add(recipient)
            assert pool._worker is None
        results += pool.finish()

    assert pool.by_worker == 0 and len(results) == START_AT


def test_a_worker_that_dies_with_a_chunk_in_hand_leaves_that_chunk_to_the_parent(tmp_path):
    job = load_job(job_with(tmp_path, MANY))
    renderer = Renderer(job, NOW)
    results: list[Result] = []
    killed = None

    with RenderPool(renderer, worker=True) as pool:
        for recipient in iter_recipients(job):
            results += pool.add(recipient)
            if killed is None and pool._at_worker:
                killed = pool._worker
                killed.proc.kill()
        results += pool.finish()

    assert killed is not None and killed.proc.returncode is not None  # reaped
    assert pool.by_worker == 0
    assert [r.index for r, _, _ in results] == list(range(MANY))
    assert not any(isinstance(message, str) for _, message, _ in results)


def test_closing_the_pool_stops_and_reaps_a_worker_still_starting(tmp_path):
    job = load_job(job_with(tmp_path, MANY))
    pool = RenderPool(Renderer(job, NOW))
    pool._usable = True
    pool._start_worker()
    worker = pool._worker
    assert worker is not None and not worker.ready

    pool.close()

    assert worker.proc.returncode is not None and pool._worker is None


@settings(max_examples=6, deadline=None)
@given(count=st.integers(1, START_AT + CHUNK * 3), data=st.data())
def test_any_batch_on_two_cores_gives_what_one_process_gives_in_list_order(
        tmp_path_factory, count, data):
    broken = data.draw(st.sets(st.integers(0, count - 1), max_size=4))
    folder = tmp_path_factory.mktemp("pool")
    job = job_with(folder, count, broken)

    alone, _ = render_pass(renderer_for(job), worker=False)
    shared, _ = render_pass(renderer_for(job), worker=True)

    assert shared == alone
    assert [r.index for r, _, _ in shared] == list(range(count))


class SlowWorker:
    """A stand-in for the worker process that has never finished anything when the pool
    looks (``replied`` is always False), and renders a chunk only when waited for."""

    def __init__(self, renderer: Renderer, setup: tuple) -> None:
        self.renderer = renderer
        self.ready = False
        self.queue: list = [setup]
        self.answered = 0

    def send(self, item) -> None:
        self.queue.append(item)

    def replied(self) -> bool:
        return False

    def reply(self):
        from mailbatch.message.renderworker import render_all as _render_all

        self.answered += 1
        item = self.queue.pop(0)
        if isinstance(item, tuple):  # the set-up: it is ready
            return self.renderer.fingerprint, None
        return self.renderer.fingerprint, list(_render_all(self.renderer, item))

    def close(self) -> None:
        pass


def test_at_the_end_the_parent_takes_back_the_chunk_the_worker_has_not_begun(
        tmp_path, monkeypatch):
    from mailbatch.message import renderpool

    job = load_job(job_with(tmp_path, START_AT + CHUNK * 3))
    workers: list[SlowWorker] = []
    monkeypatch.setattr(renderpool, "Worker", lambda setup: workers.append(
        SlowWorker(Renderer(job, NOW), setup)) or workers[-1])
    alone, _ = render_pass(renderer_for(job_with(tmp_path, START_AT + CHUNK * 3)), worker=False)

    shared, by_worker = render_pass(Renderer(job, NOW), worker=True)

    (worker,) = workers
    assert shared == alone
    assert by_worker == CHUNK and worker.answered == 2  # ready, then its first chunk only
    assert len(worker.queue) == 1  # the second chunk was rendered by the parent instead


def test_requests_and_replies_larger_than_a_pipe_holds_cross_without_either_side_stuck(
        tmp_path):
    """Recipients with 60 KB of data each: a chunk's request and its reply are megabytes,
    more than a pipe holds, while the worker has two chunks to do."""
    count = START_AT + CHUNK * 3
    rows = ["email,name,region,notes"] + [
        f"p{i}@example.org,Person {i},r{i % 5},{'n' * 60_000}" for i in range(count)]
    job = load_job(write_job(tmp_path, """\
        from: reports@example.org
        subject: "Notes for {{ name }}"
        text_template: body.txt
        recipients: people.csv
        smtp: {host: 127.0.0.1}
        """, {"people.csv": "\n".join(rows) + "\n", "body.txt": "{{ notes }}\n"}))
    done: list[tuple[list[Result], int]] = []
    thread = threading.Thread(target=lambda: done.append(
        render_pass(Renderer(job, NOW), worker=True)), daemon=True)

    thread.start()
    thread.join(timeout=120)

    assert done, "the render pass did not finish"
    results, by_worker = done[0]
    assert by_worker >= CHUNK and [r.index for r, _, _ in results] == list(range(count))
    assert all(m.text == "n" * 60_000 + "\n" for _, m, _ in results)
