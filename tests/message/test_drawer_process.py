"""Whether a chart drawer is still alive, asked without harming it on any platform.

On Windows ``os.kill(pid, 0)`` terminates the process instead of asking about it, so the
process is looked up through the Windows API there; a stand-in for it runs that branch here.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

from mailbatch.message.drawer import _alive, _drawers_alive


class FakeKernel32:
    """OpenProcess, GetExitCodeProcess and CloseHandle over a table of pid -> exit code."""

    STILL_ACTIVE = 259

    def __init__(self, processes: dict[int, int]) -> None:
        self.processes = processes
        self.open_handles: set[int] = set()

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:
        assert access == 0x1000  # PROCESS_QUERY_LIMITED_INFORMATION: look, never terminate
        if pid not in self.processes:
            return 0
        self.open_handles.add(pid + 1000)
        return pid + 1000

    def GetExitCodeProcess(self, handle: int, code: object) -> int:
        ctypes.cast(code, ctypes.POINTER(ctypes.c_ulong))[0] = self.processes[handle - 1000]
        return 1

    def CloseHandle(self, handle: int) -> int:
        self.open_handles.remove(handle)
        return 1


def test_this_process_is_alive_and_a_finished_one_is_not():
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True, timeout=60)

    assert _alive(os.getpid())
    assert not _alive(int(child.stdout))


def test_on_windows_a_running_process_is_alive_an_exited_or_unknown_one_is_not():
    kernel32 = FakeKernel32({10: FakeKernel32.STILL_ACTIVE, 11: 0})

    assert _alive(10, kernel32)
    assert not _alive(11, kernel32)  # exited with status 0
    assert not _alive(12, kernel32)  # no such process
    assert kernel32.open_handles == set()  # every handle closed


def test_a_pid_file_that_names_no_number_is_passed_over(tmp_path):
    (tmp_path / "drawer-notapid.pid").touch()
    (tmp_path / "drawer.pid").touch()

    assert not _drawers_alive(tmp_path)

    (tmp_path / f"drawer-{os.getpid()}.pid").touch()
    assert _drawers_alive(tmp_path)
