"""TrainingSupervisor: a QThread that runs `python -m engine.cli train --config run.json --events -`
(in the app bundle: `<app executable> --train-child train ...`) in its own process group, reads
its JSON-line events and re-emits them as Qt signals.

The child, not a thread, trains (docs/ARCHITECTURE.md, Shape): an MLX out-of-memory abort kills only the child,
and Stop always works (SIGINT → the child finishes its step, checkpoints and exits; SIGKILL when
it stays silent past the timeout). This thread only adapts the event stream; it never trains.
"""
from __future__ import annotations

import collections
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import QThread, Signal

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SIGNAL_NAMES = {-signal.SIGKILL: "killed (SIGKILL), usually by the system running out of memory",
                -signal.SIGABRT: "aborted (SIGABRT), e.g. a Metal out-of-memory abort",
                -signal.SIGSEGV: "crashed (segmentation fault)"}


def _own_process_group() -> dict:
    """Popen arguments for a child in its own process group (so Stop can signal it and anything it
    starts) but in the app's session: Linux groups CPU time per session ("autogroup"), so a child
    in a new session would get an equal share against the GUI whatever its nice value."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"start_new_session": True}


def child_command(python: str, args: list[str]) -> list[str]:
    """How to run ``engine.cli`` with ``args`` in a child process: in the app bundle (PyInstaller,
    ``sys.frozen``) there is no Python to run ``-m`` with, so the bundle's own executable is started
    with ``--train-child`` (raclate_app.main hands the rest to ``engine.cli.main``); else
    ``python -u -m engine.cli``."""
    if getattr(sys, "frozen", False) and python == sys.executable:
        return [python, "--train-child", *args]
    return [python, "-u", "-m", "engine.cli", *args]


class TrainingSupervisor(QThread):
    run_started = Signal(object)
    phase_changed = Signal(str)
    step_logged = Signal(object)
    eval_logged = Signal(object)
    checkpoint_saved = Signal(object)
    warning_raised = Signal(str)
    run_finished = Signal(object)   # the `finished` event (+ checkpoint, returncode); also after Stop
    run_failed = Signal(object)     # {kind, message, hint, returncode, stderr}
    log_received = Signal(str)      # the child's stderr and any non-JSON stdout, line by line
    event_received = Signal(object)  # every event, for diagnostics

    def __init__(self, config_path: str | Path, *, stop_timeout_s: float = 5.0, python: str | None = None,
                 extra_env: dict | None = None, nice: int = 10, parent=None):
        super().__init__(parent)
        self.config_path = Path(config_path)
        self.stop_timeout_s = stop_timeout_s
        self.python = python or sys.executable
        self.extra_env = dict(extra_env or {})
        self.nice = nice
        self.pid: int | None = None
        self.returncode: int | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=60)
        self._stop = threading.Event()
        self._kill = threading.Event()
        self._finished: dict | None = None
        self._error: dict | None = None
        self._checkpoint: dict | None = None
        self._output_dir: str | None = None
        self.training_started = False   # run_started came: the data passed the child's checks, steps follow

    def command(self) -> list[str]:
        return child_command(self.python, ["train", "--config", str(self.config_path), "--events", "-"])

    # called from the GUI thread ----------------------------------------------------------------
    def request_stop(self) -> None:
        """Cooperative stop: SIGINT now, SIGKILL if the child goes quiet for stop_timeout_s."""
        self._stop.set()

    def request_kill(self) -> None:
        self._stop.set()
        self._kill.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # the thread --------------------------------------------------------------------------------
    def _env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env.update(PYTHONUNBUFFERED="1", TQDM_DISABLE="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1",
                   TOKENIZERS_PARALLELISM="false")
        env.update(self.extra_env)
        return env

    def run(self) -> None:
        try:
            config = json.loads(self.config_path.read_text())
            self._output_dir = (config.get("training") or {}).get("output_dir")
            proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=self._env(), cwd=str(PROJECT_ROOT),
                                    **_own_process_group())
        except (OSError, ValueError) as exc:
            self.run_failed.emit({"kind": "io", "message": f"Could not start the training process: {exc}",
                                  "hint": "Check that Python and the engine are installed (make setup).",
                                  "returncode": None, "stderr": ""})
            return
        self.pid = proc.pid
        self._lower_priority(proc.pid)
        self._pump(proc)
        self.returncode = proc.wait()
        self._report()

    def _lower_priority(self, pid: int) -> None:
        """Nice the child so a busy trainer cannot starve the GUI of CPU (measured: with the child at
        the GUI's priority on 2 busy cores, the GUI thread waited up to ~180 ms for a time slice while
        using < 3 ms of CPU). Set right after exec, before the child starts its MLX/BLAS threads,
        which inherit it; alone on a machine the child still gets every idle cycle."""
        if self.nice and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, pid, self.nice)
            except OSError:
                pass
            autogroup = Path(f"/proc/{pid}/autogroup")   # only where the child got its own session
            if "start_new_session" in _own_process_group() and autogroup.exists():
                try:
                    autogroup.write_text(str(self.nice))
                except OSError:
                    pass

    def _signal(self, proc, sig) -> None:
        try:
            os.killpg(proc.pid, sig)   # the whole group: the child and anything it started
        except (ProcessLookupError, PermissionError):
            pass

    def _pump(self, proc) -> None:
        sel = selectors.DefaultSelector()
        buffers = {}
        for stream, handler in ((proc.stdout, self._on_stdout_line), (proc.stderr, self._on_stderr_line)):
            os.set_blocking(stream.fileno(), False)
            sel.register(stream.fileno(), selectors.EVENT_READ, handler)
            buffers[stream.fileno()] = b""
        sent_int, deadline, killed = False, None, False
        while sel.get_map():
            if self._stop.is_set() and not sent_int:
                self._signal(proc, signal.SIGINT)
                sent_int, deadline = True, time.monotonic() + self.stop_timeout_s
            if not killed and (self._kill.is_set() or (deadline and time.monotonic() > deadline)):
                self._signal(proc, signal.SIGKILL)
                killed = True
            for key, _ in sel.select(timeout=0.1):
                fd = key.fd
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(fd)
                    if buffers[fd].strip():
                        key.data(buffers[fd])
                    continue
                if sent_int:
                    deadline = time.monotonic() + self.stop_timeout_s   # still talking: still working
                lines = (buffers[fd] + data).split(b"\n")
                buffers[fd] = lines.pop()
                for line in lines:
                    key.data(line)
        sel.close()

    def _on_stderr_line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").split("\r")[-1].rstrip()
        if text.startswith("warning: "):
            return   # the CLI prints every warning to stderr too; the warning event already showed it
        if text:
            self.stderr_tail.append(text)
            self.log_received.emit(text)

    def _on_stdout_line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            event = json.loads(text)
            name = event["event"]
        except (ValueError, KeyError, TypeError):
            self.log_received.emit(text)   # a library printing to stdout: show it, don't choke
            return
        self.event_received.emit(event)
        if name == "run_started":
            self.training_started = True
            self.run_started.emit(event)
        elif name == "phase":
            self.phase_changed.emit(str(event.get("name", "")))
        elif name == "step":
            self.step_logged.emit(event)
        elif name == "eval":
            self.eval_logged.emit(event)
        elif name == "checkpoint":
            self._checkpoint = event
            self.checkpoint_saved.emit(event)
        elif name == "warning":
            self.warning_raised.emit(str(event.get("message", "")))
        elif name == "error":
            self._error = event
        elif name == "finished":
            self._finished = event

    def _report(self) -> None:
        rc, stderr = self.returncode, "\n".join(self.stderr_tail)
        if self._finished is not None:
            self.run_finished.emit({**self._finished, "checkpoint": self._checkpoint, "returncode": rc})
        elif self._stop.is_set():
            # Stopped before the trainer could finish: keep whatever checkpoint exists.
            self.run_finished.emit({"event": "finished", "output_dir": self._output_dir, "metrics": {},
                                    "stopped_early": True, "incomplete": True, "checkpoint": self._checkpoint,
                                    "returncode": rc})
        elif self._error is not None:
            self.run_failed.emit({**self._error, "returncode": rc, "stderr": stderr})
        else:
            why = SIGNAL_NAMES.get(rc, f"exit code {rc}")
            oom = rc in (-signal.SIGKILL, -signal.SIGABRT)
            self.run_failed.emit({
                "kind": "out_of_memory" if oom else "crashed",
                "message": f"The training process ended unexpectedly: {why}.",
                "hint": ("Lower the batch size (use gradient accumulation to keep the effective batch), lower the "
                         "max length, or turn on gradient checkpointing." if oom else
                         "See the log below; Help → Copy diagnostics puts everything needed for a report on the "
                         "clipboard."),
                "returncode": rc, "stderr": stderr})
