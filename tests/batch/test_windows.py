"""The run path where there is no fcntl (Windows): msvcrt's byte-range lock, no SIGHUP.

Windows cannot be tested here, so its branches run on Linux with stand-ins
(tests/fakewindows.py); tests/test_portability.py runs a whole batch that way.
"""

from __future__ import annotations

import errno
import os
import signal
import threading

import pytest

from mailbatch.batch import lock as lock_module
from mailbatch.batch.lock import WINDOWS_LOCKED_BYTE, job_lock
from mailbatch.batch.signals import reload_on_sighup, stop_on_signals
from mailbatch.errors import AlreadyRunningError, StateError
from tests.fakewindows import FakeMsvcrt


@pytest.fixture
def msvcrt(monkeypatch: pytest.MonkeyPatch) -> FakeMsvcrt:
    """The lock module as it runs on Windows: no fcntl, msvcrt's locking."""
    fake = FakeMsvcrt()
    monkeypatch.setattr(lock_module, "fcntl", None)
    monkeypatch.setitem(__import__("sys").modules, "msvcrt", fake)
    return fake


def test_without_fcntl_the_lock_is_exclusive_and_reusable(msvcrt, tmp_path):
    path = tmp_path / "state" / "job.lock"
    with job_lock(path, "job") as held:
        held.check()
        with (pytest.raises(AlreadyRunningError, match=rf"already running \(pid {os.getpid()}, "),
              job_lock(path, "job")):
            pass
    assert msvcrt.held == {}  # unlocked before its descriptor was closed
    with job_lock(path, "job"):
        pass


def test_without_fcntl_the_locked_byte_is_past_the_pid_so_a_second_run_can_read_it(
        msvcrt, tmp_path):
    # Windows locks are mandatory: a locked byte cannot be read by another process, and the
    # second run reads the holder's pid from the start of the file.
    path = tmp_path / "job.lock"
    with job_lock(path, "job"):
        assert path.read_bytes() == str(os.getpid()).encode()
        ((_, _, first, length),) = msvcrt.held
        assert (first, length) == (WINDOWS_LOCKED_BYTE, 1)
        assert first > 64 and path.stat().st_size < first  # nothing written is ever locked


def test_without_fcntl_a_lock_file_replaced_while_locking_is_locked_again(
        msvcrt, tmp_path, monkeypatch):
    path = tmp_path / "job.lock"
    real = msvcrt.locking
    replaced = []

    def locking_after_a_replacement(fd: int, mode: int, nbytes: int) -> None:
        if not replaced and mode == msvcrt.LK_NBLCK:
            path.unlink()  # another process removes the file and makes a new one meanwhile
            path.write_text("")
            replaced.append(True)
        real(fd, mode, nbytes)

    monkeypatch.setattr(msvcrt, "locking", locking_after_a_replacement)
    with job_lock(path, "job") as held:
        held.check()  # the file at the path is the one locked
        with pytest.raises(AlreadyRunningError), job_lock(path, "job"):
            pass
    assert replaced and msvcrt.held == {}


def test_a_lock_that_cannot_be_taken_for_another_reason_is_one_line_not_a_crash(
        msvcrt, tmp_path, monkeypatch):
    def no_locks(fd: int, mode: int, nbytes: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(msvcrt, "locking", no_locks)
    with (pytest.raises(StateError, match="cannot lock the lock file: No locks available; "
                                          "keep state_dir on a local disk"),
          job_lock(tmp_path / "job.lock", "job")):
        pass


def test_with_fcntl_a_lock_that_cannot_be_taken_for_another_reason_is_one_line(
        tmp_path, monkeypatch):
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")  # flock on some NFS mounts

    monkeypatch.setattr(lock_module.fcntl, "flock", no_locks)
    with (pytest.raises(StateError, match="cannot lock the lock file"),
          job_lock(tmp_path / "job.lock", "job")):
        pass


# -- signals ---------------------------------------------------------------------------------


def test_without_sighup_the_reload_signal_is_simply_not_installed(monkeypatch):
    monkeypatch.delattr(signal, "SIGHUP")
    asked = threading.Event()

    with reload_on_sighup(asked.set) as reloader:
        assert reloader.previous is None
    assert not asked.is_set()


def test_stop_signals_are_the_ones_this_platform_has_and_are_restored_after():
    before = signal.getsignal(signal.SIGTERM)
    expected = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, n)}
    with stop_on_signals(threading.Event()) as handler:
        assert set(handler.previous) == expected  # SIGBREAK (Ctrl-Break) on Windows
    assert signal.getsignal(signal.SIGTERM) == before
