"""Which batch a run works on (resume it, refuse a new one, or start one), and how to resume it."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from mailbatch.batch.journal import BatchInfo, Journal
from mailbatch.batch.report import sent_in_report
from mailbatch.errors import StateError, UnfinishedBatchError, UsageError
from mailbatch.job.model import Job

__all__ = ["batch_to_run", "resume_hint"]

log = logging.getLogger(__name__)


def batch_to_run(job: Job, journal: Journal, base: str, named: str | None, new_batch: bool,
                 now: dt.datetime, leave_unfinished: bool = False,
                 report_of: Callable[[str], Path | None] | None = None) -> tuple[BatchInfo, bool]:
    """The batch to run and whether it is resumed.

    ``named`` (``--batch``) is that batch of the journal. Otherwise the latest batch of this
    identity is resumed. A new one is refused while an older batch still has recipients to
    send (a ``{{ today }}`` batch interrupted before midnight and run again after it would
    otherwise leave them without theirs), unless ``new_batch`` or ``leave_unfinished`` (what
    the scheduler does once it has tried to finish the older one: unlike ``new_batch``, it
    resumes this period's batch if there is one). It is refused too when the
    report of a batch of that name lists recipients as sent although the journal does not
    know the batch (``report_of`` gives a batch's report path): the journal was lost, and
    starting over would send them a second copy.
    """
    journal.begin(immediate=True)  # two runs starting at once must not both create a batch
    try:
        chosen = _choose(job, journal, base, named, new_batch, now, leave_unfinished, report_of)
    except BaseException:
        journal.rollback()
        raise
    journal.commit()
    return chosen


def _choose(job: Job, journal: Journal, base: str, named: str | None, new_batch: bool,
            now: dt.datetime, leave_unfinished: bool,
            report_of: Callable[[str], Path | None] | None) -> tuple[BatchInfo, bool]:
    if named is not None:
        info = journal.find(named)
        if info is None:
            known = ", ".join(b.batch for b in journal.unfinished()[:5]) or "none unfinished"
            raise UsageError(f"{job.path}: the job has no batch {named!r} ({known}); "
                             "name a batch from its report or journal")
        return info, True
    latest = None if new_batch else journal.latest(base)
    if latest is not None:
        return latest, True
    older = _without_unbegun(job, journal, journal.unfinished(), base)
    if older and not (new_batch or leave_unfinished):
        first = older[0]
        raise UnfinishedBatchError(
            f"{job.path}: batch {first.batch} is unfinished ({first.to_send} recipient(s) still "
            f"to send), so batch {base} was not started and nothing was sent; finish it with "
            f"'mailbatch run --batch {first.batch} {job.path}', or start {base} anyway with "
            "--new-batch", batch=first.batch)
    if older and new_batch:  # the scheduler logs its own reason
        log.warning("%s: starting batch %s (--new-batch) while batch %s still has %d "
                    "recipient(s) to send; they are sent only by 'mailbatch run --batch %s'",
                    job.name, base, older[0].batch, older[0].to_send, older[0].batch)
    lost = _lost_batch(journal, base, report_of)
    if lost is not None and not new_batch:
        path, sent = lost
        raise StateError(
            f"{path}: this report of batch {base} lists {sent} recipient(s) as sent, but the "
            f"journal {journal.path} does not know the batch: the journal was deleted, "
            "replaced or restored from an older copy, and running now would send them a "
            "second copy. Restore the journal; or, to send the whole batch again anyway, run "
            f"with --new-batch (as batch {base}#2)")
    created = journal.find(journal.create(base, now, earlier=1 if lost else 0))
    assert created is not None
    return created, False


def _without_unbegun(job: Job, journal: Journal, older: list[BatchInfo],
                     base: str) -> list[BatchInfo]:
    """``older`` without the batches whose run stopped before its first message (a password
    not set, a server down): those are dropped, so yesterday's failed cron run does not
    block today's. Nobody had their message, and nobody gets two: the new batch is the one
    sent."""
    kept = []
    for info in older:
        if not info.begun and journal.drop_unbegun(info.batch):
            log.warning("%s: batch %s never began sending (its run stopped before the first "
                        "message); it is dropped and batch %s is sent instead",
                        job.name, info.batch, base)
        else:
            kept.append(info)
    return kept


def _lost_batch(journal: Journal, base: str,
                report_of: Callable[[str], Path | None] | None) -> tuple[Path, int] | None:
    """(report path, sent count) if a report says batch ``base`` sent something the journal
    does not remember (it knows no batch of that name)."""
    if report_of is None or journal.find(base) is not None:
        return None
    path = report_of(base)
    sent = sent_in_report(path) if path is not None else 0
    return (path, sent) if path is not None and sent else None


def resume_hint(job: Job, batch: str, named: bool, new_batch: bool) -> str:
    """How to resume ``batch``: the same command, when it is sure to continue this batch (a
    ``batch:`` key without templating, or ``--batch`` given), else the exact command that
    does, since a ``{{ today }}`` batch has another name tomorrow and ``--new-batch`` would
    start yet another one."""
    if named or (not new_batch and "{" not in job.batch):
        return f"run the same command again to resume batch {batch}"
    return f"resume batch {batch} with 'mailbatch run --batch {batch} {job.path}'"
