"""The console of the long commands (``run``, ``relabel``, ``ensemble``, ``train``, ``sweep``).

By default it is calm: the terminal shows the stage lines, one progress bar per training stage
and the results; everything else (Ray's, Tune's and Ray Data's output, the Train workers' logs,
warnings, this package's INFO log) goes to ``RUN_DIR/ray-tagger.log``, whose path is printed
first. ``-v`` turns it off: everything on the terminal, as Ray prints it.

How: the process's file descriptors 1 and 2 (where Ray, its workers' forwarded output and C
extensions write) and ``sys.stdout`` / ``sys.stderr`` point at the log file while the command
runs; the terminal is kept on duplicates of the original descriptors. Code that wants the
terminal writes through :func:`say` (results), :func:`stage` (a log line shown on the console)
or :func:`runs_progress` (a bar).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, TextIO

from .storage import location

log = logging.getLogger(__name__)

LOG_NAME = "ray-tagger.log"
"""The log file of a calm command, in its run folder."""

REDRAW_S = 60.0
"""How often a progress bar is redrawn when the console is not a terminal (a pipe or a file, e.g.
``make demo | tee``): each redraw is another ``\r`` segment there. On a terminal: every second."""

_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
_current: "Console | None" = None


def stage(logger: logging.Logger, text: str, *args) -> None:
    """An INFO line that the calm console also shows (stage lines, decisions, key figures)."""
    logger.info(text, *args, extra={"console": True})


def say(text: str) -> None:
    """Results for the user: the terminal (and the log) when calm, else standard output."""
    if _current is None:
        print(text, flush=True)
    else:
        _current.write(text)


def current() -> "Console | None":
    """The calm console of this command, if one is active."""
    return _current


def _terminal(stream: TextIO, fd: int) -> tuple[TextIO, int | None]:
    """A stream to the terminal that survives the redirection of ``fd``: a duplicate of the
    descriptor when ``stream`` writes to it, else ``stream`` itself (e.g. a test's StringIO)."""
    try:
        attached = stream.fileno() == fd
    except (AttributeError, OSError, io.UnsupportedOperation):
        attached = False
    if not attached:
        return stream, None
    stream.flush()
    dup = os.dup(fd)
    return open(dup, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False), dup


class _ConsoleFilter(logging.Filter):
    """Our warnings and errors, and the lines marked by :func:`stage`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "console", False):
            return True
        return record.levelno >= logging.WARNING and record.name.startswith("ray_tagger")


class _TqdmHandler(logging.Handler):
    """Writes above any progress bar instead of through it."""

    def __init__(self, stream: TextIO):
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # a console that went away must not stop the run
            self.handleError(record)


class Console:
    """A calm console for one command, writing its log to ``log_path`` (appended: a resumed run
    keeps the earlier log). Use as a context manager; :attr:`out` / :attr:`err` are the terminal."""

    def __init__(self, log_path: str | Path, command: str):
        self.log_path, self.command = location(log_path), command
        # object storage has no append: the log is kept in a local file and added to the object at the end
        self._local = self.log_path if isinstance(self.log_path, Path) else _local_file()
        self.out, self.err = sys.stdout, sys.stderr
        self._saved: list = []

    def tty(self) -> bool:
        """Whether the terminal side is a terminal (bars redraw every second) or a pipe or file."""
        return bool(getattr(self.err, "isatty", lambda: False)())

    def write(self, text: str) -> None:
        """Results: to the terminal and the log."""
        from tqdm import tqdm

        tqdm.write(text, file=self.out)
        self._log.write(text + "\n")

    def __enter__(self) -> "Console":
        global _current
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self._local, "a", buffering=1, encoding="utf-8", errors="replace")
        self._log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} ray-tagger {self.command} (pid {os.getpid()})\n")
        self.out, out_fd = _terminal(sys.stdout, 1)
        self.err, err_fd = _terminal(sys.stderr, 2)
        saved_fds = [(fd, os.dup(fd)) for fd in (1, 2)]
        for fd in (1, 2):
            os.dup2(self._log.fileno(), fd)
        self._saved = [saved_fds, [d for d in (out_fd, err_fd) if d is not None], (sys.stdout, sys.stderr)]
        sys.stdout = sys.stderr = self._log
        root = logging.getLogger()
        self._handlers = [logging.StreamHandler(self._log), _TqdmHandler(self.err)]
        self._handlers[0].setFormatter(_FORMAT)
        self._handlers[1].setFormatter(logging.Formatter("%(message)s"))
        self._handlers[1].addFilter(_ConsoleFilter())
        self._root_state = (root.level, list(root.handlers))
        root.handlers = list(self._handlers)
        root.setLevel(logging.INFO)
        _current = self
        when = "" if self._local == self.log_path else " when the command ends"
        self.err.write(f"ray-tagger {self.command}: Ray's output and the full log go to {self.log_path}{when} (-v: all on the console)\n")
        self.err.flush()
        return self

    def __exit__(self, *exc) -> None:
        global _current
        _current = None
        root = logging.getLogger()
        root.setLevel(self._root_state[0])
        root.handlers = self._root_state[1]
        saved_fds, dups, (sys.stdout, sys.stderr) = self._saved
        with contextlib.suppress(Exception):
            self._log.flush()
        for fd, saved in saved_fds:
            os.dup2(saved, fd)
            os.close(saved)
        for stream in (self.out, self.err):
            with contextlib.suppress(Exception):
                stream.flush()
        for d in dups:
            os.close(d)
        self._log.close()
        if self._local != self.log_path:
            with self.log_path.open("ab") as f:
                f.write(self._local.read_bytes())
            self._local.unlink()


def _local_file() -> Path:
    fd, name = tempfile.mkstemp(prefix="ray-tagger-", suffix=".log")
    os.close(fd)
    return Path(name)


def _run_state(run_dir: Path) -> tuple[bool, int, float | None]:
    """(complete, last iteration reported, last held-out lwlrap) of a training run folder."""
    done = (run_dir / "summary.json").is_file()
    iteration, val = 0, None
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            m = json.loads(line)
        except ValueError:  # a line being written
            continue
        iteration = max(iteration, int(m.get("iteration", 0)))
        if m.get("val_lwlrap") is not None:
            val = float(m["val_lwlrap"])
    return done, iteration, val


@contextlib.contextmanager
def runs_progress(label: str, run_dirs: dict[str, Path], iterations: int, every_s: float = 2.0,
                  early_stops: bool = False) -> Iterator[None]:
    """One progress bar over the iterations of the training runs in ``run_dirs`` (name → folder),
    read from their ``metrics.jsonl`` / ``summary.json`` while the body runs: runs finished of all,
    and the running runs' iterations with their last held-out lwlrap. Only on a calm console.

    With ``early_stops`` (a sweep whose scheduler stops trials), runs left unfinished when the
    body returns were stopped: the bar's total shrinks to the iterations they trained and the
    postfix counts them ("stopped": by the scheduler or by an error, which the sweep reports),
    so a finished sweep ends at 100 %."""
    console = _current
    if console is None or not run_dirs:
        yield
        return
    from tqdm import tqdm

    total = iterations * len(run_dirs)
    tty = console.tty()
    bar = tqdm(total=total, desc=label, unit="it", file=console.err, dynamic_ncols=True, leave=True,
               mininterval=1.0 if tty else REDRAW_S, bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} it "
               "[{elapsed}<{remaining}]{postfix}")
    stop = threading.Event()
    quiet_s = 0.0 if tty else REDRAW_S
    last = [0.0]

    def update(force: bool = False, ended: bool = False) -> None:
        states = {name: _run_state(d) for name, d in run_dirs.items()}
        finished = sum(done for done, _, _ in states.values())
        stopped = len(states) - finished if ended else 0
        running = [f"{name} {it}" + (f" ({val:.2f})" if val is not None else "")
                   for name, (done, it, val) in states.items() if not done and it > 0 and not ended]
        vals = [val for done, _, val in states.values() if done and val is not None]
        held = "" if not vals else f", held-out {vals[0]:.2f}" if len(vals) == 1 else f", held-out {min(vals):.2f}–{max(vals):.2f}"
        bar.n = sum(iterations if done else min(it, iterations) for done, it, _ in states.values())
        if ended and bar.n:
            bar.total = bar.n
        bar.set_postfix_str(f"runs {finished}/{len(run_dirs)} done" + (f", {stopped} stopped" if stopped else "")
                            + held + ("; " + ", ".join(running) if running else ""), refresh=False)
        if force or time.monotonic() - last[0] >= quiet_s:
            bar.refresh()
            last[0] = time.monotonic()

    def poll() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(Exception):
                update()

    thread = threading.Thread(target=poll, name="runs-progress", daemon=True)
    thread.start()
    ended = False
    try:
        yield
        ended = early_stops
    finally:
        stop.set()
        thread.join(timeout=10)
        with contextlib.suppress(Exception):
            update(force=True, ended=ended)
        bar.close()


@contextlib.contextmanager
def count_progress(label: str, unit: str) -> Iterator:
    """A counting bar (no known total) for work the driver sees arrive, e.g. scored examples; yields
    ``advance(n)``. Only on a calm console (else ``advance`` does nothing)."""
    console = _current
    if console is None:
        yield lambda n: None
        return
    from tqdm import tqdm

    tty = console.tty()
    bar = tqdm(desc=label, unit=unit, file=console.err, mininterval=1.0 if tty else REDRAW_S, leave=True, delay=1.0,
               bar_format="{desc}: {n_fmt} " + unit + " [{elapsed}, {rate_fmt}]")
    try:
        yield bar.update
    finally:
        bar.close()
