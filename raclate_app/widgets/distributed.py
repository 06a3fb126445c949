"""DistributedSection: the advanced "Distributed" settings of the Model & Task page.

A host list (rank 0 first, usually this Mac; ``NAME=IP`` picks the address the processes talk
over, e.g. the Thunderbolt bridge's), processes per host, and "Check hosts": for each host an
``ssh -o BatchMode=yes -o ConnectTimeout=5 HOST test -x PYTHON`` off the GUI thread, so it proves
both the password-less login and the same Python path (README "Train on several Macs").

Hook for the Train page: ``use_launcher(supervisor, section.launch_args())`` before
``supervisor.start()`` makes the TrainingSupervisor start its child as
``python -m engine.cli launch <launch args> -- train --config run.json --events -``; rank 0's events
come through mlx.launch on the same stdout, so the plots work as before, and Stop (SIGINT to the
group) reaches the local ranks, which stop all ranks at the same step.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from html import escape

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtWidgets import (QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox,
                               QVBoxLayout, QWidget)

LOCAL_NAMES = {"127.0.0.1", "localhost"}


def parse_hosts(text: str) -> list[str]:
    """'mac-a=10.10.0.1, mac-b' → ['mac-a=10.10.0.1', 'mac-b'] (commas, spaces or new lines)."""
    return [h for h in text.replace("\n", ",").replace(" ", ",").split(",") if h]


def ssh_name(host: str) -> str:
    return host.partition("=")[0]


def check_host(host: str, python: str, ssh=("ssh",), timeout_s: float = 5.0) -> dict:
    """{host, ok, message, seconds}: can we log in without a prompt, and is ``python`` there?"""
    name, started = ssh_name(host), time.monotonic()
    if name in LOCAL_NAMES:
        return {"host": host, "ok": True, "message": "this machine", "seconds": 0.0}
    cmd = [*ssh, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(timeout_s)}", name, f"test -x {shlex.quote(python)}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 5, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"host": host, "ok": False, "message": f"no answer within {timeout_s:.0f} s",
                "seconds": time.monotonic() - started}
    except OSError as exc:
        return {"host": host, "ok": False, "message": f"could not run ssh: {exc}", "seconds": 0.0}
    seconds = time.monotonic() - started
    if done.returncode == 0:
        return {"host": host, "ok": True, "message": f"reachable ({seconds:.1f} s)", "seconds": seconds}
    if done.returncode == 1:   # logged in, but `test -x` failed
        return {"host": host, "ok": False, "seconds": seconds,
                "message": f"reachable, but {python} is missing there: install RACLATE Tuner at the same path"}
    last = (done.stderr.strip().splitlines() or [f"ssh exit code {done.returncode}"])[-1]
    return {"host": host, "ok": False, "message": last, "seconds": seconds}


def check_hosts(hosts: list[str], python: str, ssh=("ssh",), timeout_s: float = 5.0) -> list[dict]:
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(hosts)))) as pool:
        return list(pool.map(lambda h: check_host(h, python, ssh, timeout_s), hosts))


def launch_command(command: list[str], launch_args: list[str]) -> list[str]:
    """``[py, -u, -m, engine.cli, train, ...]`` → ``[py, -u, -m, engine.cli, launch, *launch_args, --, train, ...]``."""
    at = command.index("train")
    return [*command[:at], "launch", *launch_args, "--", *command[at:]]


def use_launcher(supervisor, launch_args: list[str] | None) -> None:
    """Make a TrainingSupervisor start its child through `raclate launch` (no-op for None)."""
    if launch_args:
        plain = type(supervisor).command
        supervisor.command = lambda: launch_command(plain(supervisor), launch_args)


class _CheckSignals(QObject):
    checked = Signal(int, object)


class _CheckJob(QRunnable):
    def __init__(self, number, signals, hosts, python, ssh, timeout_s):
        super().__init__()
        self.number, self.signals, self.args = number, signals, (hosts, python, ssh, timeout_s)

    def run(self) -> None:
        try:
            self.signals.checked.emit(self.number, check_hosts(*self.args))
        except RuntimeError:
            pass   # the widget closed while ssh ran


class DistributedSection(QGroupBox):
    """Checkable group "Distributed training (several Macs)": unchecked = one process, as before."""

    settings_changed = Signal()
    hosts_checked = Signal(object)    # [{host, ok, message, seconds}]

    def __init__(self, parent=None, *, python: str | None = None, ssh=("ssh",), timeout_s: float = 5.0):
        super().__init__("Distributed training (several Macs)", parent)
        self.setCheckable(True)
        self.setChecked(False)
        self.python, self.ssh, self.timeout_s = python or sys.executable, tuple(ssh), timeout_s
        self.hosts_edit = QLineEdit(placeholderText="mac-a=10.10.0.1, mac-b=10.10.0.2  (rank 0 first)")
        self.processes = QSpinBox(minimum=1, maximum=16, value=1)
        self.processes.setToolTip("Processes per host. With no hosts: this many processes on this machine (a test).")
        self.check_button = QPushButton("Check hosts")
        self.status = QLabel(wordWrap=True)
        self.note = QLabel(wordWrap=True)
        self.note.setText("The batch size is per Mac (global batch = batch size × processes). Every Mac needs "
                          f"RACLATE Tuner at {escape(self.python)}, and the data and model at the same paths; "
                          "rank 0 (the first host) writes the model and checkpoints.")
        self._signals = _CheckSignals(self)
        self._signals.checked.connect(self.on_job_checked)
        self._job = 0
        self.results: list[dict] = []
        body = QWidget()
        form = QFormLayout(body)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Hosts", self.hosts_edit)
        row = QHBoxLayout()
        row.addWidget(self.processes)
        row.addStretch()
        row.addWidget(self.check_button)
        form.addRow("Processes per host", row)
        layout = QVBoxLayout(self)
        layout.addWidget(body)
        layout.addWidget(self.status)
        layout.addWidget(self.note)
        self.toggled.connect(self.on_toggled)
        self.hosts_edit.textChanged.connect(self.on_hosts_changed)
        self.processes.valueChanged.connect(lambda _v: self.settings_changed.emit())
        self.check_button.clicked.connect(self.check)
        self.on_toggled(False)

    # -- values -------------------------------------------------------------------------------------
    def hosts(self) -> list[str]:
        return parse_hosts(self.hosts_edit.text())

    def launch_args(self) -> list[str] | None:
        """`raclate launch` options, or None when off (or nothing to distribute over)."""
        if not self.isChecked():
            return None
        hosts, n = self.hosts(), self.processes.value()
        if not hosts:
            return ["-n", str(n)] if n > 1 else None
        return ["--hosts", ",".join(hosts), *(["-n", str(n)] if n > 1 else []), "--python", self.python]

    def values(self) -> dict:
        return {"enabled": self.isChecked(), "hosts": self.hosts_edit.text(), "processes": self.processes.value()}

    def set_values(self, values: dict) -> None:
        self.hosts_edit.setText(str(values.get("hosts", "")))
        self.processes.setValue(int(values.get("processes", 1)))
        self.setChecked(bool(values.get("enabled", False)))

    # -- checking -----------------------------------------------------------------------------------
    def check(self) -> None:
        hosts = self.hosts()
        if not hosts:
            self.status.setText("Add hosts first (or leave it empty and set processes to run them on this machine).")
            return
        self._job += 1
        self.check_button.setEnabled(False)
        self.status.setText(f"Checking {len(hosts)} host(s) over SSH …")
        QThreadPool.globalInstance().start(_CheckJob(self._job, self._signals, hosts, self.python, self.ssh,
                                                     self.timeout_s))

    def on_job_checked(self, number: int, results: list) -> None:
        if number != self._job:
            return   # the host list changed while ssh ran
        from raclate_app import theme
        self.results = results
        self.check_button.setEnabled(True)
        lines = []
        for r in results:
            color = theme.hex_of(theme.status_color("ok" if r["ok"] else "over"))
            lines.append(f"<span style='color:{color}'>{'✓' if r['ok'] else '✗'} {escape(ssh_name(r['host']))}</span>"
                         f" — {escape(r['message'])}")
        self.status.setText("<br>".join(lines))
        self.hosts_checked.emit(results)

    # -- slots --------------------------------------------------------------------------------------
    def on_toggled(self, on: bool) -> None:
        for w in (self.hosts_edit, self.processes, self.check_button, self.status, self.note):
            w.setVisible(on)
        self.settings_changed.emit()

    def on_hosts_changed(self, _text: str) -> None:
        self._job += 1   # a result for the old list is no longer news
        self.results = []
        self.check_button.setEnabled(True)
        self.status.clear()
        self.settings_changed.emit()


if __name__ == "__main__":
    from PySide6.QtWidgets import QApplication
    app = QApplication(sys.argv)
    section = DistributedSection()
    section.setChecked(True)
    section.hosts_edit.setText("127.0.0.1, localhost")
    section.show()
    sys.exit(app.exec())
