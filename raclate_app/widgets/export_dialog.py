"""ExportDialog: write a model folder (a run's final model or one of its checkpoints) in any of the
engine's export formats (sentence-transformers, PyLate, transformers, ONNX, GGUF, PEFT, MLX, Core ML; with
the engine's reload self-check and model card) and optionally push it to the Hugging Face Hub. The formats
and quantizations this model cannot take are greyed out with the engine's own refusal as their tooltip
(``engine.outputs.export.format_choices``, read in the background when the dialog opens). Runs off
the GUI thread with progress; Cancel stops before the next step (a step already running finishes).
Exports go outside the runs folder by default (so they do not show up as runs), and a folder that
exists is replaced only after asking."""
from __future__ import annotations

import re
from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QMessageBox, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from engine.outputs.export import FORMATS as ENGINE_FORMATS
from engine.outputs.export import QUANTIZE, format_choices
from raclate_app import hub_token, theme
from raclate_app.workers import Cancelled, Progress, Worker

TITLES = {"sentence-transformers": "sentence-transformers (SentenceTransformer)", "pylate": "PyLate (models.ColBERT)",
          "transformers": "transformers (AutoModel…)", "onnx": "ONNX (onnxruntime)",
          "gguf": "GGUF (llama.cpp, LM Studio, Ollama)", "peft": "PEFT adapter (a LoRA checkpoint)",
          "mlx": "MLX (mlx-embeddings)", "coreml": "Core ML (.mlpackage for Swift apps)"}
FORMATS = tuple((key, TITLES.get(key, key)) for key in ENGINE_FORMATS)
QUANTIZE_TITLES = {None: "none (full precision)", "int8": "int8", "int4": "int4 (4-bit)",
                   "f16": "f16 (half precision)", "q8_0": "q8_0 (8-bit blocks)"}
NATURAL = {"sentence-similarity": "sentence-transformers", "late-interaction": "pylate"}
EXPORTS_ROOT = Path.home() / "RACLATE exports"
# the engine's export refusals name `raclate export` flags; the dialog's own words instead
CLI_WORDS = ((r"pass --overwrite to replace", "answer Yes to “Replace the existing folder?” to replace"),
             (r"--overwrite only replaces", "Only a folder this app wrote can be replaced:"),
             (r" for --to\b", ""), (r"--to folder", "folder"), (r"Export it as --format ([\w-]+)", r"Choose \1"),
             (r"--format ([\w-]+)", r"the \1 format"), (r"--quantize", "quantization"))
OFFLINE_WORDS = ("ConnectionError", "ConnectError", "Timeout", "OfflineModeIsEnabled", "NameResolution",
                 "Max retries", "Temporary failure in name resolution", "Network is unreachable")


def export_and_push(source: str, out: str, fmt: str, overwrite: bool, repo_id: str | None, private: bool,
                    token: str | None, progress, quantize: str | None = None) -> dict:
    """engine.outputs.export.export_model, then engine.outputs.hub.push_folder; ``progress`` is asked between the steps."""
    from engine.outputs.export import export_model
    steps = 2 if repo_id else 1
    progress(0, steps, "Writing the folder and reloading it to check it")
    result = export_model(source, out, fmt=fmt, overwrite=overwrite, quantize=quantize)
    if repo_id:
        if hub_token.offline():
            raise OSError("Offline mode is on (HF_HUB_OFFLINE), so nothing was pushed.")
        progress(1, steps, f"Pushing to {repo_id}")
        from engine.outputs.hub import push_folder
        result["hub"] = push_folder(out, repo_id, private=private, token=token)
    progress(steps, steps, "Done")
    return result


def default_folder(model_path: str, fmt: str) -> Path:
    """<exports root>/<run name>-<format>; a checkpoint is named after its run and step."""
    src = Path(model_path)
    name = f"{src.parent.parent.name}-{src.name}" if src.parent.name == "checkpoints" else src.name
    return EXPORTS_ROOT / f"{name}-{fmt}"


def gui_words(text: str) -> str:
    for pattern, words in CLI_WORDS:
        text = re.sub(pattern, words, text)
    return text


def plain_error(exc: Exception, out: str) -> str:
    """One paragraph for people; a network failure says "offline" and that the folder is safe."""
    text = str(exc)
    saved = f" The exported model is saved in {out}." if out and Path(out).exists() else ""
    if isinstance(exc, OSError) and "Offline mode" in text:
        return text + saved + " Turn offline mode off (unset HF_HUB_OFFLINE) and push again."
    if any(word in text for word in OFFLINE_WORDS):
        return ("Could not reach the Hugging Face Hub: this computer seems to be offline." + saved
                + " Push again when the network is back.")
    hint = getattr(exc, "hint", "")
    return gui_words(text + (f" {hint}" if hint and hint not in text else ""))


class ExportDialog(QDialog):
    def __init__(self, model_path: str, task_key: str | None = None, parent=None, worker: Worker | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export model")
        self.model_path = str(model_path)
        self.task_key = task_key
        self.worker = worker or Worker(self)
        self.relay: Progress | None = None
        self.result: dict | None = None
        self.error: str | None = None
        self._folder_edited = False
        self._token_found = False
        self.choices: dict | None = None   # engine.outputs.export.format_choices, once read
        self.format = QComboBox()
        for key, title in FORMATS:
            self.format.addItem(title, key)
        self.quantize = QComboBox()
        self.folder = QLineEdit()
        self.folder_button = QPushButton("Choose…")
        self.push = QCheckBox("Also push to the Hugging Face Hub")
        self.push_box = QGroupBox()
        self.repo = QLineEdit(placeholderText="USER/NAME, e.g. alice/minilm-faq")
        self.private = QCheckBox("Private repository")
        self.private.setChecked(True)
        self.token_state = QLabel(wordWrap=True)
        self.token = QLineEdit(placeholderText="hf_… (a token with write access)")
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.remember = QCheckBox("Remember it in the system keyring")
        self.forget = QPushButton("Forget the saved token")
        self.progress = QProgressBar(minimum=0, maximum=1, value=0)
        self.progress.setFormat("")
        self.progress.hide()
        self.status = QLabel(wordWrap=True, textInteractionFlags=Qt.TextInteractionFlag.TextBrowserInteraction)
        self.status.setOpenExternalLinks(False)
        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.close_button = QPushButton("Close")
        self._build()
        self.format.currentIndexChanged.connect(self._suggest_folder)
        self.format.currentIndexChanged.connect(self._fill_quantize)
        self.quantize.currentIndexChanged.connect(self.update_state)
        self.folder.textEdited.connect(lambda _t: setattr(self, "_folder_edited", True))
        self.folder_button.clicked.connect(self.choose_folder)
        self.push.toggled.connect(self.on_push_toggled)
        self.repo.textChanged.connect(self.update_state)
        self.token.textChanged.connect(self.update_state)
        self.forget.clicked.connect(self.forget_token)
        self.export_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        self.status.linkActivated.connect(lambda link: QDesktopServices.openUrl(QUrl(link)))
        self.set_task(task_key)
        if task_key is None:
            from raclate_app.evaluation import folder_task_key
            self.worker.submit("export-task", folder_task_key, self.model_path, on_done=self.set_task,
                               on_error=lambda exc: self.set_status(f"Cannot read the model: {exc}", "over"))
        self.worker.submit("export-choices", format_choices, self.model_path, on_done=self.set_choices,
                           on_error=lambda exc: self.set_status(f"Cannot tell which formats fit: {escape(str(exc))}",
                                                                "over"))
        self.update_token_state()
        self.setMinimumWidth(660)
        self.on_push_toggled(False)

    def _build(self) -> None:
        form = QFormLayout()
        src = Path(self.model_path)   # a checkpoint (RUN/checkpoints/step-N) is named by its run and step
        step = re.fullmatch(r"step-0*(\d+)", src.name) if src.parent.name == "checkpoints" else None
        name = f"{src.parent.parent.name}, checkpoint at step {step[1]}" if step else src.name
        form.addRow("Model", QLabel(f"<b>{escape(name)}</b> "
                                    f"<span style='color:{theme.hex_of(theme.muted_text())}'>"
                                    f"{escape(self.model_path)}</span>", wordWrap=True))
        form.addRow("Format", self.format)
        form.addRow("Quantize", self.quantize)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(self.folder_button)
        form.addRow("Folder", row)
        self.push_body = QWidget()
        QVBoxLayout(self.push_box).addWidget(self.push_body)
        push = QFormLayout(self.push_body)
        push.setContentsMargins(0, 0, 0, 0)
        push.addRow("Repository", self.repo)
        push.addRow("", self.private)
        push.addRow("Token", self.token_state)
        push.addRow("", self.token)
        token_row = QHBoxLayout()
        token_row.addWidget(self.remember)
        token_row.addStretch()
        token_row.addWidget(self.forget)
        push.addRow("", token_row)
        buttons = QHBoxLayout()
        buttons.addStretch()
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.push)
        layout.addWidget(self.push_box)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)

    def on_push_toggled(self, on: bool) -> None:
        self.push_box.setVisible(on)   # folded away until asked for
        self.update_state()
        self.adjustSize()

    # -- choices -------------------------------------------------------------------------------------
    def set_task(self, task_key: str | None) -> None:
        self.task_key = task_key
        natural = NATURAL.get(task_key or "", "transformers")
        model = self.format.model()
        for i, (key, _title) in enumerate(FORMATS):   # until the engine's choices are read: the task's own
            model.item(i).setEnabled(key in (natural, "transformers") if self.choices is None
                                     else not self.choices[key]["refused"])
        self.format.setCurrentIndex(self.format.findData(natural))
        self.format.setToolTip("transformers also writes an embedding model's bare encoder (AutoModel)."
                               if natural != "transformers" else "")
        self._suggest_folder()
        self.update_state()

    def set_choices(self, choices: dict) -> None:
        """Grey out what the engine would refuse for this model, its message as the tooltip."""
        self.choices = choices
        model = self.format.model()
        for i, (key, _title) in enumerate(FORMATS):
            refused = choices[key]["refused"]
            model.item(i).setEnabled(not refused)
            model.item(i).setToolTip(gui_words(refused or ""))
        self._fill_quantize()

    def _fill_quantize(self, *_args) -> None:
        """No quantization, then the ones the engine takes for this format and model (others greyed out,
        with the reason)."""
        fmt = self.format.currentData()
        takes = (self.choices or {}).get(fmt, {}).get("quantize", [])
        previous = self.quantize.currentData()
        self.quantize.blockSignals(True)
        self.quantize.clear()
        self.quantize.addItem(QUANTIZE_TITLES[None], None)
        if self.choices is not None:
            for name in QUANTIZE:
                self.quantize.addItem(QUANTIZE_TITLES.get(name, name), name)
                item = self.quantize.model().item(self.quantize.count() - 1)
                item.setEnabled(name in takes)
                item.setToolTip("" if name in takes else f"{TITLES.get(fmt, fmt)} does not take {name} for this model.")
        index = self.quantize.findData(previous)
        self.quantize.setCurrentIndex(index if index >= 0 and self.quantize.model().item(index).isEnabled() else 0)
        self.quantize.blockSignals(False)
        self.update_state()   # enables the box when the format takes any

    def _suggest_folder(self) -> None:
        if not self._folder_edited:
            self.folder.setText(str(default_folder(self.model_path, self.format.currentData())))
        self.update_state()

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for the exported model", str(Path(self.folder.text()).parent))
        if path:
            self.folder.setText(path)
            self._folder_edited = True
            self.update_state()

    def update_token_state(self) -> None:
        """Look the token up once (a keyring may be slow); typing in the fields then only reads this."""
        token, where = hub_token.find_token()
        self._token_found = bool(token)
        muted = theme.hex_of(theme.muted_text())
        if token:
            self.token_state.setText(f"Using the token from {escape(where)}.")
        else:
            self.token_state.setText(f"<span style='color:{muted}'>No token found (HF_TOKEN, huggingface-cli login). "
                                     "Paste one below; it is never written to the settings file.</span>")
        self.token.setVisible(not token)
        has_ring = hub_token.keyring_available()
        self.remember.setVisible(not token)
        self.remember.setEnabled(has_ring)
        self.remember.setChecked(has_ring)
        self.remember.setToolTip("" if has_ring else "Install the “keyring” package to remember the token; "
                                 "without it the token is kept until the app quits.")
        self.forget.setVisible(bool(token) and where in ("the system keyring", "this session"))
        self.update_state()

    def forget_token(self) -> None:
        hub_token.forget_token()
        self.update_token_state()

    def problem(self) -> str | None:
        if not self.folder.text().strip():
            return "Choose the folder to export to."
        fmt, quantize = self.format.currentData(), self.quantize.currentData()
        if self.choices is not None:   # the engine's own refusal, before any work
            if self.choices[fmt]["refused"]:
                return escape(gui_words(self.choices[fmt]["refused"]))
            if quantize is not None and quantize not in self.choices[fmt]["quantize"]:
                return f"{escape(TITLES.get(fmt, fmt))} does not take {quantize} for this model."
        if self.push.isChecked():
            if not self.repo.text().strip():
                return "Give the Hub repository, USER/NAME."
            bad = hub_token.repo_problem(self.repo.text())
            if bad:
                return bad
            if not self._token_found and not self.token.text().strip():
                return "Paste a Hugging Face token with write access (huggingface.co/settings/tokens)."
        return None

    def update_state(self, *_args) -> None:
        busy = self.relay is not None
        problem = self.problem()
        self.export_button.setEnabled(not busy and problem is None)
        self.cancel_button.setEnabled(busy)
        for w in (self.format, self.folder, self.folder_button, self.push, self.push_box):
            w.setEnabled(not busy)
        fmt = self.format.currentData()
        self.quantize.setEnabled(not busy and bool((self.choices or {}).get(fmt, {}).get("quantize")))
        if not busy and self.result is None and self.error is None:
            self.set_status(problem or "", "unknown")

    def set_status(self, html: str, level: str = "unknown") -> None:
        color = theme.muted_text() if level == "unknown" else theme.status_color(level)
        self.status.setText(f"<span style='color:{theme.hex_of(color)}'>{html}</span>")

    # -- running -------------------------------------------------------------------------------------
    def replace_question(self, out: str) -> QMessageBox:
        buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
        box = QMessageBox(QMessageBox.Icon.Question, "Replace the existing folder?",
                          "<b>Replace the existing folder?</b>", buttons, self)
        box.setInformativeText(f"{out} already exists. Only a folder this app wrote (an earlier export or run) "
                               "is replaced; anything else is left alone.")
        box.setDefaultButton(QMessageBox.StandardButton.No)
        return box

    def ask_replace(self, out: str) -> bool:
        """Whether to replace the folder ``out`` that exists; a method so tests can answer it."""
        box = self.replace_question(out)
        box.exec()
        box.deleteLater()
        return box.clickedButton() is box.button(QMessageBox.StandardButton.Yes)

    def start(self) -> bool:
        if self.relay is not None or self.problem():
            return False
        out = self.folder.text().strip()
        target = Path(out).expanduser()
        replace = target.is_dir() and any(target.iterdir())
        if replace and not self.ask_replace(out):
            self.result, self.error = None, None
            self.set_status("Nothing was written: choose another folder, or export again and replace it.", "tight")
            return False
        repo = self.repo.text().strip() if self.push.isChecked() else None
        token = None
        if repo:
            typed = self.token.text().strip()
            if typed:
                hub_token.save_token(typed, self.remember.isChecked())
                self.token.clear()
                self.update_token_state()
            token = hub_token.find_token()[0]
        self.result, self.error = None, None
        self.relay = Progress(self)
        self.relay.progressed.connect(self.on_progress)
        self.worker.submit("export", export_and_push, self.model_path, out, self.format.currentData(), replace, repo,
                           self.private.isChecked(), token, self.relay, self.quantize.currentData(),
                           on_done=self.on_done, on_error=lambda exc: self.on_failed(exc, out))
        self.progress.show()
        self.progress.setRange(0, 0)
        self.set_status("Exporting …")
        self.update_state()
        return True

    def cancel(self) -> None:
        if self.relay is not None:
            self.relay.cancel()
            self.cancel_button.setEnabled(False)
            self.set_status("Cancelling: the step that runs now finishes first …", "tight")

    def on_progress(self, done: int, total: int, text: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{text} …" if done < total else text)
        self.set_status(escape(text) + (" …" if done < total else ""))

    def on_done(self, result: dict) -> None:
        self.relay, self.result = None, result
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        check = result["check"]
        out = result["output_dir"]
        text = (f"✓ Exported to <a href='{QUrl.fromLocalFile(out).toString()}'>{escape(out)}</a> as "
                f"{escape(result['format'])}; reloaded with {escape(check['reference'])}: "
                f"{escape(check['compared'])} match (max difference {check['max_abs_diff']:.1e}"
                + (f", min cosine {check['min_cosine']:.5f}" if check.get("min_cosine") is not None else "") + ").")
        if "hub" in result:
            hub = result["hub"]
            text += (f"<br>✓ Pushed to <a href='{hub['url']}'>{escape(hub['repo_id'])}</a> "
                     f"({'private' if hub['private'] else 'public'}, {len(hub['files'])} files).")
        self.set_status(text, "ok")
        self.update_state()
        self.adjustSize()

    def on_failed(self, exc: Exception, out: str) -> None:
        self.relay = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Cancelled" if isinstance(exc, Cancelled) else "Not done")
        if isinstance(exc, Cancelled):
            done = Path(out).exists() and (Path(out) / "config.json").exists()
            self.error = "cancelled"
            self.set_status("Cancelled." + (f" The folder {escape(out)} was written; nothing was pushed." if done else ""),
                            "tight")
        else:
            self.error = plain_error(exc, out)
            self.set_status(f"<b>Not done:</b> {escape(self.error)}", "over")
        self.update_state()
        self.adjustSize()
