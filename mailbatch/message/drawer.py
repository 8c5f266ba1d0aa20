"""The chart drawer: a process that draws a batch's charts while its messages render.

matplotlib takes half a second to import and a tenth of a second a chart: for a batch of a
few thousand reports, as long as rendering all of them. So the render pass does not draw. It
writes each distinct chart's spec to the scratch folder as ``chart-DIGEST.json`` (created
exclusively: of two render processes, one claims it) and hands the name to a drawer process
(``python -m mailbatch.message.drawer FOLDER``, started when the first chart is asked for),
which writes ``chart-DIGEST.png`` on the other core. ``settle`` waits for the drawer at the
end of the pass and draws in this process whatever is still missing (a drawer that could
not start or died), so no message is sent without its chart, and every chart's input was
checked while rendering.

Drawn charts are also kept in a cache folder (``~/.cache/mailbatch/charts``, or
``$MAILBATCH_CACHE_DIR``; ``off`` for none), by the digest of what they show and of the code
that draws them: ``check``, ``preview``, a dry run and the run itself draw a chart once
between them. A run copies what it uses into its own scratch folder, so a cache pruned
meanwhile (files unused for 30 days, beyond the newest 1,000) never takes a chart from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import IO, Any

from mailbatch.errors import RenderError
from mailbatch.message.attachments import AttachmentProblem
from mailbatch.message.charts import draw
from mailbatch.message.generated import Scratch

__all__ = ["Drawer", "ensure"]

WAIT = 300.0  # seconds a chart may take to come out before this process draws it itself
_STARTING = 5.0  # seconds a drawer may take to start (and write its pid file)


class Drawer:
    """One render process's side of the drawer: claims charts, queues them, settles them."""

    def __init__(self, scratch: Scratch) -> None:
        self.scratch = scratch
        self._proc: subprocess.Popen[bytes] | None = None
        self._here = False  # draw in this process (no drawer could start, or settled)
        self._asked: set[str] = set()  # chart names this process handed out as pending
        self._claimed: set[str] = set()  # ... of which this process draws (its drawer)

    def start(self) -> None:
        """Start the drawer now (it imports matplotlib while the batch renders)."""
        if self._proc is not None or self._here:
            return
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "mailbatch.message.drawer", str(self.scratch.path)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=_environment())
        except OSError:  # no processes left, no interpreter to start: draw here
            self._here = True
            return
        # A renderer dropped without settling (an error stopped the pass) leaves no drawer.
        weakref.finalize(self, _end, self._proc)

    def request(self, name: str, spec: dict[str, Any]) -> Path | None:
        """The chart's PNG if it is drawn already; else None, and the chart is claimed and
        queued (unless the other render process claimed it first: it draws it)."""
        png = self.scratch.path / f"{name}.png"
        if png.is_file() or _from_cache(png):
            return png
        if name in self._asked:
            return None
        claim = png.with_suffix(".json")
        try:
            with open(claim, "x", encoding="utf-8") as file:
                json.dump(spec, file)
        except FileExistsError:
            self._asked.add(name)
            return None
        except OSError as err:
            raise AttachmentProblem(f"cannot write to {self.scratch.path}: {err.strerror}; "
                                    "free some disk space") from None
        self._asked.add(name)
        self._claimed.add(name)
        self.start()
        if self._proc is not None and self._proc.stdin is not None:
            try:
                self._proc.stdin.write(name.encode("ascii") + b"\n")
                self._proc.stdin.flush()
                return None
            except OSError:  # the drawer died: draw here from now on
                self._stop()
        self._here = True
        try:
            return _draw_claim(claim)
        except AttachmentProblem:  # written beside the claim; settle() reports it once
            return None

    def settle(self, own_only: bool = False) -> None:
        """Wait until every chart this process handed out is drawn (``own_only``: the ones
        it claimed; a render worker leaves the others to the process that claimed them).
        Raises RenderError for the ones that cannot be drawn (nothing is sent then)."""
        self._stop(wait=True)
        self._here = True  # a later chart (a message rendered again) is drawn here
        failures = []
        for name in sorted(self._claimed if own_only else self._asked):
            try:
                ensure(self.scratch.path / f"{name}.png")
            except AttachmentProblem as err:
                failures.append(f"{err}; the messages that show it cannot be sent")
        if not own_only:
            self._asked.clear()
        self._claimed.clear()
        if failures:
            raise RenderError(failures)

    def _stop(self, wait: bool = False) -> None:
        """End the drawer: with ``wait``, once it has drawn its queue (however long that
        is, as long as a chart comes out every WAIT seconds)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()  # the drawer finishes its queue, then ends
        done, deadline = -1, 0.0
        while wait:
            try:
                proc.wait(timeout=1.0)
                return
            except subprocess.TimeoutExpired:
                now_done = sum(1 for _ in self.scratch.path.glob("chart-*.png"))
                if now_done != done:
                    done, deadline = now_done, time.monotonic() + WAIT
                elif time.monotonic() > deadline:
                    break  # stuck: what it has not drawn is drawn here (see ensure)
        _end(proc)


def _end(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def ensure(png: Path) -> Path:
    """``png`` once it is drawn: waits while a drawer is at it, and draws it here if none
    finishes it. Raises AttachmentProblem for a chart that cannot be drawn."""
    claim, error = png.with_suffix(".json"), png.with_suffix(".error")
    deadline = time.monotonic() + WAIT
    while not png.is_file():
        if error.is_file():
            raise AttachmentProblem(error.read_text(encoding="utf-8", errors="replace"))
        if not claim.is_file():
            raise AttachmentProblem(f"chart {png.name} is missing from {png.parent}")
        if time.monotonic() > deadline or _orphaned(claim):
            return _draw_claim(claim)
        time.sleep(0.01)
    return png


def _orphaned(claim: Path) -> bool:
    """A claim no drawer is working on: none serves the folder (each keeps a pid file there
    while it runs), and the claim is old enough for one to have started."""
    try:
        age = time.time() - claim.stat().st_mtime
    except OSError:
        return False
    return age > _STARTING and not _drawers_alive(claim.parent)


def _drawers_alive(folder: Path) -> bool:
    """Whether a drawer still serves ``folder`` (each drawer keeps a pid file there)."""
    for pid_file in folder.glob("drawer-*.pid"):
        try:
            pid = int(pid_file.stem.split("-")[1])
        except (ValueError, IndexError):
            continue
        if _alive(pid):
            return True
    return False


def _alive(pid: int, kernel32: Any = None) -> bool:
    """Whether process ``pid`` is running. On Windows ``os.kill(pid, 0)`` would not ask: it
    terminates the process. There the process is looked up instead (``kernel32``: a test's
    stand-in for the Windows API)."""
    if os.name != "nt" and kernel32 is None:
        try:
            os.kill(pid, 0)
        except PermissionError:  # someone else's process
            return True
        except OSError:  # ProcessLookupError: none
            return False
        return True
    import ctypes

    if kernel32 is None:
        kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined,unused-ignore]
        kernel32.OpenProcess.restype = ctypes.c_void_p
        kernel32.CloseHandle.argtypes = [ctypes.c_void_p]
        kernel32.GetExitCodeProcess.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong)]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False  # no such process (or not ours to look at: not our drawer)
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _draw_claim(claim: Path) -> Path:
    """Draw a claimed chart in this process (also what the drawer does for each name)."""
    png = claim.with_suffix(".png")
    try:
        spec = json.loads(claim.read_text(encoding="utf-8"))
        data = draw(spec)
    except Exception as err:  # any failure of matplotlib: said once, for every message
        message = f"chart {png.name} could not be drawn: {type(err).__name__}: {err}"
        with contextlib.suppress(OSError):
            claim.with_suffix(".error").write_text(message, encoding="utf-8")
        raise AttachmentProblem(message) from None
    _to_cache(png.name, data)
    return Scratch(claim.parent).store_as(png.name, data)


KEEP_DAYS, KEEP_FILES = 30, 1000


def cache_folder() -> Path | None:
    """Where drawn charts are kept between runs, or None (``MAILBATCH_CACHE_DIR=off``)."""
    chosen = os.environ.get("MAILBATCH_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "none", "0") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mailbatch" / "charts"


def _from_cache(png: Path) -> bool:
    """Copy the cached chart into the run's scratch folder; whether there was one."""
    folder = cache_folder()
    if folder is None:
        return False
    try:
        data = (folder / png.name).read_bytes()
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.utime(folder / png.name)  # recently used: kept when the cache is pruned
    Scratch(png.parent).store_as(png.name, data)
    return True


def _to_cache(name: str, data: bytes) -> None:
    """Keep a drawn chart for later runs (best effort: a cache that cannot be written is
    no cache), and prune what has not been used for a while."""
    folder = cache_folder()
    if folder is None:
        return
    with contextlib.suppress(OSError, AttachmentProblem):
        folder.mkdir(parents=True, exist_ok=True)
        Scratch(folder).store_as(name, data)
        entries = sorted(((p.stat().st_mtime, p) for p in folder.glob("chart-*.png")),
                         reverse=True)
        old = time.time() - KEEP_DAYS * 86400
        for n, (mtime, path) in enumerate(entries):
            if n >= KEEP_FILES or mtime < old:
                path.unlink(missing_ok=True)


def _environment() -> dict[str, str]:
    """The environment of a drawer: this same mailbatch importable (a source checkout)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _serve(folder: Path, names: IO[bytes]) -> None:
    """The drawer: matplotlib imported at once, then one chart per name until stdin ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the render process's to handle
    pid_file = folder / f"drawer-{os.getpid()}.pid"
    pid_file.touch()
    try:
        # the import is the slow part: done while the render pass starts
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401

        for line in names:
            claim = folder / (line.decode("ascii").strip() + ".json")
            with contextlib.suppress(AttachmentProblem):  # written as .error for the renderer
                _draw_claim(claim)
    finally:
        with contextlib.suppress(OSError):
            pid_file.unlink()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), sys.stdin.buffer)
