"""Export dialog: folders that load in sentence-transformers / transformers, a push through a fake
HfApi with a typed token kept in the (fake) system keyring and never in the settings file, a plain
error when offline, and Cancel before the push."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from tests.app_fixtures import app_models  # noqa: F401
from tests.test_app_support import app_settings, screenshots, shot  # noqa: F401

pytestmark = pytest.mark.gui


class FakeApi:
    calls: list = []
    fail: Exception | None = None

    def __init__(self, token):
        self.token = token

    def create_repo(self, repo_id, private=False, exist_ok=False, repo_type="model"):
        FakeApi.calls.append(("create_repo", repo_id, private, self.token))
        if FakeApi.fail is not None:
            raise FakeApi.fail
        return types.SimpleNamespace(url=f"https://huggingface.co/{repo_id}")

    def upload_folder(self, repo_id, folder_path, repo_type, ignore_patterns, commit_message):
        FakeApi.calls.append(("upload_folder", repo_id, folder_path, self.token))


@pytest.fixture
def hub(monkeypatch):
    """No token anywhere, online, a fake HfApi and a fake keyring (a dict)."""
    import huggingface_hub

    import engine.outputs.hub
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    FakeApi.calls, FakeApi.fail = [], None
    monkeypatch.setattr(engine.outputs.hub, "make_api", FakeApi)
    store = {}
    ring = types.ModuleType("keyring")
    ring.get_keyring = lambda: "fake"
    ring.get_password = lambda service, user: store.get((service, user))
    ring.set_password = lambda service, user, value: store.__setitem__((service, user), value)
    ring.delete_password = lambda service, user: store.pop((service, user), None)
    monkeypatch.setitem(sys.modules, "keyring", ring)
    from raclate_app import hub_token
    monkeypatch.setattr(hub_token, "_session", {})
    return store


def dialog_for(qtbot, path, task_key=None):
    from raclate_app.widgets.export_dialog import ExportDialog
    dialog = ExportDialog(str(path), task_key)
    qtbot.addWidget(dialog)
    dialog.show()
    if task_key is None:
        qtbot.waitUntil(lambda: dialog.task_key is not None, timeout=20_000)
    return dialog


def run(qtbot, dialog, timeout=180_000):
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.relay is None, timeout=timeout)


def test_sentence_transformers_export_loads(qtbot, app_models, tmp_path, screenshots, monkeypatch):
    st = pytest.importorskip("sentence_transformers")
    source = app_models["sentence-similarity"]
    dialog = dialog_for(qtbot, source)                       # the task is read from the folder
    assert dialog.task_key == "sentence-similarity" and dialog.format.currentData() == "sentence-transformers"
    formats = {dialog.format.itemData(i): dialog.format.model().item(i).isEnabled() for i in range(3)}
    assert formats == {"sentence-transformers": True, "pylate": False, "transformers": True}
    assert dialog.folder.text().endswith(f"{source.name}-sentence-transformers")
    out = tmp_path / "st-export"
    dialog.folder.setText(str(out))
    shot(dialog, screenshots, "export_dialog")
    run(qtbot, dialog)
    assert dialog.result and dialog.error is None, dialog.status.text()
    assert "Exported to" in dialog.status.text() and "sentence-transformers" in dialog.result["check"]["reference"]
    model = st.SentenceTransformer(str(out), device="cpu")
    vectors = model.encode(["a text", "another text"])
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()
    assert (out / "README.md").exists() and (out / "raclate_run.json").exists()
    shot(dialog, screenshots, "export_done")
    # the same folder again: asked first; "No" writes nothing, "Yes" replaces it
    monkeypatch.setattr(dialog, "ask_replace", lambda _out: False)
    assert not dialog.start() and "Nothing was written" in dialog.status.text()
    monkeypatch.setattr(dialog, "ask_replace", lambda _out: True)
    run(qtbot, dialog)
    assert dialog.result and dialog.error is None


def test_transformers_export_of_a_classifier_loads(qtbot, app_models, tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    dialog = dialog_for(qtbot, app_models["classification"], "classification")
    assert dialog.format.currentData() == "transformers"
    assert not dialog.format.model().item(0).isEnabled()       # no sentence-transformers for a classifier
    dialog.folder.setText(str(tmp_path / "clf"))
    run(qtbot, dialog)
    assert dialog.result, dialog.status.text()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "clf"))
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}


def test_push_goes_through_the_hub_api_with_a_token_from_the_keyring(qtbot, app_models, tmp_path, hub,
                                                                        app_settings, screenshots):
    dialog = dialog_for(qtbot, app_models["classification"], "classification")
    dialog.folder.setText(str(tmp_path / "pushed"))
    dialog.push.setChecked(True)
    assert dialog.token.isVisible() and dialog.remember.isEnabled() and dialog.remember.isChecked()
    assert not dialog.export_button.isEnabled() and "repository" in dialog.status.text()
    dialog.repo.setText("alice")
    assert not dialog.export_button.isEnabled() and "USER/NAME" in dialog.status.text()
    dialog.repo.setText("alice/tiny-classifier")
    assert not dialog.export_button.isEnabled() and "token" in dialog.status.text()
    dialog.token.setText("hf_secret_token")
    assert dialog.export_button.isEnabled()
    shot(dialog, screenshots, "export_push")
    run(qtbot, dialog)
    assert dialog.result and "hub" in dialog.result, dialog.status.text()
    assert FakeApi.calls[0] == ("create_repo", "alice/tiny-classifier", True, "hf_secret_token")
    assert FakeApi.calls[1][:2] == ("upload_folder", "alice/tiny-classifier")
    assert "Pushed to" in dialog.status.text()
    assert hub == {("RACLATE Tuner", "huggingface-token"): "hf_secret_token"}      # in the keyring …
    app_settings.q.sync()
    assert "hf_secret" not in (tmp_path / "settings.ini").read_text()              # … never in the settings
    assert not dialog.token.isVisible() and "system keyring" in dialog.token_state.text()
    dialog.forget.click()
    assert hub == {} and dialog.token.isVisible()


def test_offline_push_says_so_plainly(qtbot, app_models, tmp_path, hub, monkeypatch, screenshots):
    FakeApi.fail = ConnectionError("HTTPSConnectionPool(host='huggingface.co'): Max retries exceeded "
                                   "(NameResolutionError)")
    dialog = dialog_for(qtbot, app_models["classification"], "classification")
    out = tmp_path / "offline"
    dialog.folder.setText(str(out))
    dialog.push.setChecked(True)
    dialog.repo.setText("alice/tiny-classifier")
    dialog.token.setText("hf_x")
    run(qtbot, dialog)
    assert dialog.result is None and dialog.error.startswith("Could not reach the Hugging Face Hub")
    assert "offline" in dialog.error and str(out) in dialog.error and (out / "config.json").exists()
    shot(dialog, screenshots, "export_offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")                   # offline mode: no attempt at all
    FakeApi.calls, FakeApi.fail = [], None
    monkeypatch.setattr(dialog, "ask_replace", lambda _out: True)   # the folder of the first try
    run(qtbot, dialog)
    assert "Offline mode is on" in dialog.error and not FakeApi.calls


def test_cancel_stops_before_the_push(qtbot, app_models, tmp_path, hub):
    dialog = dialog_for(qtbot, app_models["classification"], "classification")
    dialog.folder.setText(str(tmp_path / "cancelled"))
    dialog.push.setChecked(True)
    dialog.repo.setText("alice/tiny-classifier")
    dialog.token.setText("hf_x")
    assert dialog.start()
    dialog.cancel()
    assert "Cancelling" in dialog.status.text()
    qtbot.waitUntil(lambda: dialog.relay is None, timeout=180_000)
    assert dialog.error == "cancelled" and not FakeApi.calls and "Cancelled" in dialog.status.text()
    assert dialog.export_button.isEnabled() and dialog.progress.format() == "Cancelled"   # (written or not: a race)


def test_every_engine_format_is_offered_and_refusals_come_from_the_engine(qtbot, app_models, tmp_path, screenshots):
    """All of engine.outputs.export.FORMATS are listed; what the engine refuses for this model is greyed out
    with its own message, quantizations are offered per format, and a quantized MLX export goes through."""
    pytest.importorskip("mlx_embeddings")
    import json

    from engine.outputs.export import FORMATS
    dialog = dialog_for(qtbot, app_models["sentence-similarity"])
    qtbot.waitUntil(lambda: dialog.choices is not None, timeout=60_000)
    assert [dialog.format.itemData(i) for i in range(dialog.format.count())] == list(FORMATS)
    items = {dialog.format.itemData(i): dialog.format.model().item(i) for i in range(dialog.format.count())}
    enabled = {key: item.isEnabled() for key, item in items.items()}
    assert enabled["sentence-transformers"] and enabled["onnx"] and enabled["gguf"] and enabled["mlx"]
    assert not enabled["pylate"] and not enabled["peft"] and "no LoRA adapters" in items["peft"].toolTip()

    def quantize_offered(fmt):
        dialog.format.setCurrentIndex(dialog.format.findData(fmt))
        return [dialog.quantize.itemData(i) for i in range(dialog.quantize.count())
                if dialog.quantize.model().item(i).isEnabled()]
    assert quantize_offered("sentence-transformers") == [None] and not dialog.quantize.isEnabled()
    assert quantize_offered("gguf") == [None, "f16", "q8_0"]
    assert quantize_offered("mlx") == [None, "int8", "int4"] and dialog.quantize.isEnabled()
    dialog.quantize.setCurrentIndex(dialog.quantize.findData("int8"))
    out = tmp_path / "mlx-int8"
    dialog.folder.setText(str(out))
    shot(dialog, screenshots, "export_formats")
    run(qtbot, dialog)
    assert dialog.result and dialog.error is None, dialog.status.text()
    assert dialog.result["format"] == "mlx" and dialog.result["check"]["quantize"] == "int8"
    assert json.loads((out / "config.json").read_text())["quantization"]["bits"] == 8
    shot(dialog, screenshots, "export_formats_done")


def test_a_format_the_engine_refuses_cannot_start(qtbot, app_models, screenshots):
    """A classifier: MLX (embeddings only) is refused with the engine's words, and Export stays off."""
    dialog = dialog_for(qtbot, app_models["classification"], "classification")
    qtbot.waitUntil(lambda: dialog.choices is not None, timeout=60_000)
    dialog.format.setCurrentIndex(dialog.format.findData("mlx"))   # greyed out, picked anyway
    refused = dialog.choices["mlx"]["refused"]
    assert refused and "embedding models" in refused
    assert not dialog.export_button.isEnabled() and "embedding models" in dialog.status.text()
    assert not dialog.start() and dialog.relay is None
    shot(dialog, screenshots, "export_refused_format")
