"""A job, recipient or data file that is not a regular file — a folder, a named pipe, a
device — is refused at once naming the path: opening a FIFO for reading blocks until a writer
comes, so a cron run would hang for ever instead of failing."""

from __future__ import annotations

import os

import pytest

from mailbatch import load_job
from mailbatch.errors import JobError
from mailbatch.job.datafiles import load_data
from mailbatch.job.recipients import iter_recipients
from tests.pipeline import offline_job

BODY = """
    from: reports@example.org
    subject: "Hi {{ name }}"
    text: "Hello\\n"
"""
ONE = "recipients: [{email: ann@example.org}]\n"

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


@needs_fifo
@pytest.mark.parametrize("name", ["people.csv", "people.json", "people.yaml"])
def test_a_recipient_list_that_is_a_named_pipe_is_refused_without_waiting(tmp_path, name):
    job = offline_job(tmp_path, BODY + f"recipients: {name}\n")
    os.mkfifo(tmp_path / name)
    with pytest.raises(JobError, match="is not a regular file") as caught:
        list(iter_recipients(load_job(job)))
    assert caught.value.path == str(tmp_path / name)


@needs_fifo
@pytest.mark.parametrize("name", ["d.csv", "d.json", "d.yaml"])
def test_a_data_file_that_is_a_named_pipe_is_refused_without_waiting(tmp_path, name):
    job = offline_job(tmp_path, BODY + ONE + f"data: {{d: {name}}}\n")
    os.mkfifo(tmp_path / name)
    with pytest.raises(JobError, match="is not a regular file"):
        load_data(load_job(job))


@needs_fifo
def test_a_job_file_that_is_a_named_pipe_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "job.yaml")
    with pytest.raises(JobError, match="is not a regular file"):
        load_job(tmp_path / "job.yaml")


def test_a_recipient_list_that_is_a_folder_says_so(tmp_path):
    job = offline_job(tmp_path, BODY + "recipients: people.csv\n")
    (tmp_path / "people.csv").mkdir()
    with pytest.raises(JobError, match="is a folder, not a file"):
        list(iter_recipients(load_job(job)))


def test_a_device_as_the_job_file_is_refused(tmp_path):
    with pytest.raises(JobError, match="is not a regular file"):
        load_job(os.devnull)
