"""Model & Task page: forms built from TrainingArgs, task picker, presets from config.json, the
memory estimate and the largest batch that fits."""
from __future__ import annotations

import json
from dataclasses import fields

import pytest

from tests.test_app_support import (app_settings, model_page, project, screenshots, shot, wait_checked,  # noqa: F401
                                    wait_idle, window)

pytestmark = pytest.mark.gui


def test_forms_are_built_from_training_args(qtbot):
    from raclate_app.forms import ADVANCED, BASIC, SettingsForm
    from raclate_app.state import training_defaults

    from engine.training.args import TrainingArgs
    form = SettingsForm(BASIC + ADVANCED)
    qtbot.addWidget(form)
    defaults = training_defaults()
    values = form.values()
    for name, value in values.items():
        assert value == pytest.approx(defaults[name]), name
    helps = {f.name: f.metadata["help"] for f in fields(TrainingArgs)}
    for name, editor in form.editors.items():
        assert editor.toolTip() == helps[name]
    TrainingArgs(**values)   # every value the form gives is valid for the dataclass


def test_basic_settings_visible_advanced_folded(model_page):
    assert set(model_page.basic.editors) == {"num_train_epochs", "batch_size", "learning_rate", "max_length"}
    assert model_page.basic.isVisible() and not model_page.advanced.isVisible()
    for name in ("gradient_accumulation_steps", "grad_checkpoint", "lr_scheduler_type", "warmup_ratio",
                 "freeze_embeddings", "eval_steps", "save_steps", "seed"):
        assert name in model_page.advanced.editors
    model_page.advanced_toggle.click()
    assert model_page.advanced.isVisible()
    lr = model_page.basic.editors["learning_rate"]
    assert lr.text() == "5e-05"
    lr.stepBy(1)
    assert model_page.project.training["learning_rate"] == pytest.approx(1e-4)


def test_task_picker_explains_and_sets_roles(qtbot, model_page, project):
    from raclate_app.tasks import APP_TASKS
    assert [b.text() for b in model_page.task_buttons.values()] == [t.title for t in APP_TASKS]
    model_page.task_buttons["regression"].click()
    assert project.task_key == "regression" and project.task.engine_task == "text-classification"
    assert project.training_values()["is_regression"] is True
    model_page.task_buttons["late-interaction"].click()
    values = project.training_values()
    assert values["use_late_interaction"] is True and values["is_regression"] is None
    assert project.task.roles == ("text", "text_pair", "negative", "label", "ignore")


def test_default_model_preset_and_memory(model_page, screenshots):
    s = model_page.summary
    assert s.model_type == "bert" and 22e6 < s.parameters < 23e6   # all-MiniLM-L6-v2, from safetensors headers
    assert "BERT" in model_page.model_box.info.text() and "built in" in model_page.model_box.info.text()
    assert model_page.basic.values()["batch_size"] == 32 and "preset" in model_page.preset_label.text()
    assert "GB" in model_page.memory_label.text() or "MB" in model_page.memory_label.text()
    shot(model_page, screenshots, "model_default")


def test_preset_from_a_model_folder(qtbot, model_page, project, tmp_path):
    folder = tmp_path / "mbert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "modernbert", "hidden_size": 256, "num_hidden_layers": 4, "intermediate_size": 384,
        "num_attention_heads": 4, "vocab_size": 50368, "max_position_embeddings": 384}))
    project.set_model(str(folder))
    qtbot.waitUntil(lambda: model_page.summary is not None and model_page.summary.folder == folder, timeout=20_000)
    values = model_page.basic.values()
    assert values["batch_size"] == 16 and values["learning_rate"] == pytest.approx(8e-5)
    assert values["max_length"] == 384            # the preset's 512, capped at max_position_embeddings
    assert "ModernBERT" in model_page.model_box.info.text()
    assert model_page.model_box.combo.currentText() == str(folder)
    # a folder without weights is named as the reason training cannot start, and not offered again
    assert "no .safetensors weights" in model_page.model_box.info.text()
    assert str(folder) not in project.settings.recent("models")
    wait_idle(qtbot, project)


def test_cli_and_app_build_the_same_run_config(qtbot, model_page, project, tmp_path):
    """The same choices on the Model page (Project.run_config) and in `raclate train --config run.json`
    plus flags give the same TrainingArgs and DatasetArgs: both go through engine.training.config, and
    what neither names (batch size, max length) comes from the default model's preset in both."""
    from dataclasses import asdict

    from engine.cli import build_parser
    from engine.commands.train import resolve_train_config
    from engine.models import preset_for
    project.load_demo()
    qtbot.waitUntil(lambda: project.preview is not None, timeout=20_000)
    model_page.basic.set_values({"num_train_epochs": 2.0, "learning_rate": 1e-4})
    model_page.advanced.set_values({"seed": 7})
    app = project.run_config(tmp_path / "out")
    config = tmp_path / "run.json"
    # the demo folder has its own validation file, so the app sends no fraction to hold out
    data = {k: project.data_args()[k] for k in ("data", "columns", "validation_split")}
    config.write_text(json.dumps({"model": "default", "task": "sentence-similarity", "data": data}))
    flags = ["--epochs", "2", "--lr", "1e-4", "--seed", "7", "--output", str(tmp_path / "out"),
             "--scheduler", "constant", "--warmup", "0.1"]   # the demo's schedule (engine.demo)
    cli = resolve_train_config(build_parser().parse_args(["train", "--config", str(config), *flags]))
    assert cli.training.to_dict() == app["training"] and asdict(cli.data) == app["data"]
    preset = preset_for("default")
    assert (app["training"]["batch_size"], app["data"]["max_length"]) == (preset["batch_size"], preset["max_length"])
    assert app["training"]["seed"] == app["data"]["seed"] == 7
    wait_idle(qtbot, project)


def test_memory_turns_red_and_largest_batch_fits(qtbot, model_page, project, screenshots):
    model_page.available = 4 * 2 ** 30            # pretend this machine has 4 GB free
    model_page.basic.set_values({"batch_size": 256, "max_length": 512})
    assert model_page.memory_label.property("level") == "over"
    hint = model_page.memory_hint.text()
    assert "gradient checkpointing" in hint and "accumulation" in hint
    shot(model_page, screenshots, "model_memory_over")
    assert model_page.fit_button.isEnabled()
    model_page.fit_button.click()
    batch = model_page.basic.values()["batch_size"]
    assert 0 < batch < 256 and project.training["batch_size"] == batch
    assert model_page.memory_label.property("level") in ("ok", "tight")


def test_unknown_hub_model_says_so(qtbot, model_page, project):
    project.set_model("nobody/not-a-model-xyz")
    qtbot.waitUntil(lambda: model_page.summary is None and "Hub" in model_page.model_box.info.text(), timeout=20_000)
    assert not model_page.fit_button.isEnabled()
    wait_idle(qtbot, project)


def test_memory_estimate_math():
    from engine.models import memory
    config = {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536, "num_attention_heads": 12,
              "vocab_size": 30522, "max_position_embeddings": 512, "model_type": "bert"}
    small = memory.estimate(config, 22_700_000, 8, 128)
    big = memory.estimate(config, 22_700_000, 16, 128)
    ckpt = memory.estimate(config, 22_700_000, 16, 128, grad_checkpoint=True)
    frozen = memory.estimate(config, 22_700_000, 16, 128, freeze_embeddings=True)
    assert big.activations == 2 * small.activations and ckpt.activations < big.activations / 2
    assert small.weights == 4 * 22_700_000 and small.optimizer == 2 * small.gradients
    assert frozen.optimizer < big.optimizer
    available = 8 * 2 ** 30
    fit = memory.largest_batch(config, 22_700_000, 128, available)
    assert memory.estimate(config, 22_700_000, fit, 128).total <= memory.FIT_FRACTION * available
    assert memory.estimate(config, 22_700_000, fit + 8, 128).total > memory.FIT_FRACTION * available
    total, source = memory.machine_memory()
    assert total and total > 0 and source


def test_distributed_section_is_advanced_and_sets_launch_args(model_page, screenshots):
    """Issue 12's GUI part: the section folds with the advanced settings and hands the Train page
    the `raclate launch` options (the Train page wraps its supervisor with them)."""
    section = model_page.distributed
    assert not section.isVisible()
    model_page.advanced_toggle.click()
    assert section.isVisible()
    assert getattr(model_page.project, "launch_args", None) is None
    section.setChecked(True)
    section.processes.setValue(2)
    assert model_page.project.launch_args == ["-n", "2"]
    shot(model_page, screenshots, "model_distributed")
    section.setChecked(False)
    assert model_page.project.launch_args is None


def test_model_page_shows_the_refusal_and_the_attention_switch(qtbot, model_page, project, tmp_path):
    """A task the family's output could not be loaded for is named with the reason (the engine refuses
    the run); the attention switch is there for families that have one (Gemma 3) only."""
    from tests.test_fidelity_fixes import config_only
    page = model_page
    assert not page.attention_combo.isEnabled() and not page.task_problem.isVisible()   # BERT
    project.set_model(config_only(tmp_path / "lfm2", "lfm2"))
    qtbot.waitUntil(lambda: page.summary is not None and page.summary.model_type == "lfm2", timeout=20_000)
    page.task_buttons["classification"].click()
    assert page.task_problem.isVisible() and "LFM2 has no text-classification class" in page.task_problem.text()
    assert "LFM2 has no text-classification class" in page.blocking.text()
    page.task_buttons["sentence-similarity"].click()
    assert not page.task_problem.isVisible()
    project.set_model(config_only(tmp_path / "gemma", "gemma3_text"))
    qtbot.waitUntil(lambda: page.summary is not None and page.summary.model_type == "gemma3_text", timeout=20_000)
    assert page.attention_combo.isEnabled()
    page.attention_combo.setCurrentText("bidirectional")
    assert project.training["bidirectional"] is True
    assert project.training_values()["bidirectional"] is True
    project.set_model(config_only(tmp_path / "bert", "bert"))
    qtbot.waitUntil(lambda: page.summary is not None and page.summary.model_type == "bert", timeout=20_000)
    assert not page.attention_combo.isEnabled() and project.training["bidirectional"] is None
    wait_idle(qtbot, project)


def test_optional_number_and_text_editors(qtbot):
    """Issue 18: an optional number (None = the model's own value) and a text field have editors."""
    from raclate_app.forms import SettingsForm
    form = SettingsForm(["dropout", "query_prompt", "document_prompt"])
    qtbot.addWidget(form)
    got = []
    form.values_changed.connect(got.append)
    assert form.values() == {"dropout": None, "query_prompt": None, "document_prompt": None}
    dropout = form.editors["dropout"]
    assert dropout.use_model.isChecked() and not dropout.spin.isEnabled()
    assert dropout.use_model.text() == "use the model's value"
    dropout.use_model.setChecked(False)
    assert dropout.spin.isEnabled() and got[-1]["dropout"] == 0.0
    dropout.spin.setValue(0.2)
    assert got[-1]["dropout"] == pytest.approx(0.2)
    form.set_values({"dropout": None, "query_prompt": "query: "})
    assert dropout.use_model.isChecked() and not dropout.spin.isEnabled()
    assert form.values() == {"dropout": None, "query_prompt": "query: ", "document_prompt": None}   # spaces kept
    form.set_values({"dropout": 0.35})
    assert not dropout.use_model.isChecked() and form.values()["dropout"] == pytest.approx(0.35)


def test_dropout_and_prompts_in_the_advanced_settings(qtbot, model_page, project, tmp_path, screenshots):
    page = model_page
    project.load_demo()   # pairs: prompts apply
    qtbot.waitUntil(lambda: project.preview is not None, timeout=20_000)
    page.advanced_toggle.click()
    for name in ("dropout", "query_prompt", "document_prompt"):
        assert name in page.advanced.editors
    dropout, query = page.advanced.editors["dropout"], page.advanced.editors["query_prompt"]
    dropout.use_model.setChecked(False)
    dropout.spin.setValue(0.15)
    page.task_buttons["sentence-similarity"].click()
    assert query.isEnabled()
    query.setText("query: ")
    query.editingFinished.emit()
    assert project.training["dropout"] == pytest.approx(0.15) and project.training["query_prompt"] == "query: "
    config = project.run_config(tmp_path / "out")["training"]
    assert config["dropout"] == pytest.approx(0.15) and config["query_prompt"] == "query: "
    shot(page, screenshots, "model_advanced_dropout_prompts")
    page.task_buttons["classification"].click()   # prompts are for embedding models: the engine refuses others
    assert not query.isEnabled() and query.text() == "" and project.training["query_prompt"] is None
    page.task_buttons["late-interaction"].click()
    assert not query.isEnabled()
    dropout.use_model.setChecked(True)
    assert project.training["dropout"] is None
    wait_idle(qtbot, project)


def test_sidebar_tick_follows_a_refusal_found_after_the_model_loads(qtbot, window, tmp_path):
    """The Model page says when its verdict changes (a family that cannot train the task, found once
    the model's config is read): the sidebar drops its tick at once."""
    from tests.test_app_support import wait_checked, write_jsonl
    from tests.test_fidelity_fixes import config_only
    p, page = window.project, window.pages["model"]
    rows = [{"text": f"text number {i}", "label": "ab"[i % 2]} for i in range(20)]
    p.open_source(str(write_jsonl(tmp_path / "cls.jsonl", rows)))
    qtbot.waitUntil(lambda: p.preview is not None, timeout=20_000)
    p.set_task("classification")
    wait_checked(qtbot, p)
    window.go_to("model")
    assert window.sidebar.item(1).text().endswith("✓")
    p.set_model(config_only(tmp_path / "lfm2", "lfm2"))
    qtbot.waitUntil(lambda: page.summary is not None and page.summary.model_type == "lfm2", timeout=20_000)
    assert page.refusal
    assert not window.sidebar.item(1).text().endswith("✓")
    wait_idle(qtbot, p)


# -- the model box (issue 18): folders and Hub ids, checked before "ready", recommended models ------------------


def type_model(qtbot, page, text: str) -> None:
    """Type ``text`` in the model box and press Return, as a user would."""
    from PySide6.QtCore import Qt
    edit = page.model_box.combo.lineEdit()
    edit.selectAll()
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def checked(qtbot, project, name: str):
    qtbot.waitUntil(lambda: project.model_check is not None and project.model_check.name == name, timeout=20_000)
    return project.model_check


def model_files(folder):
    """``folder`` with the embedded model's files (linked): config.json, safetensors, tokenizer."""
    from engine.defaults import default_model_dir
    folder.mkdir(parents=True)
    for f in default_model_dir().iterdir():
        (folder / f.name).symlink_to(f)
    return folder


def hub_cache(monkeypatch, root, repo_id: str | None = None, offline: bool = True):
    """A Hugging Face cache at ``root`` (with ``repo_id`` in it: the embedded model's files), and no network."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    if repo_id:
        repo = root / f"models--{repo_id.replace('/', '--')}"
        model_files(repo / "snapshots" / "0123abcd")
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0123abcd")


def test_typed_hub_id_is_kept_and_said_offline(qtbot, model_page, project, monkeypatch, tmp_path, screenshots):
    """Typed and entered with Return, a Hub id became "None": shown in the box, trained from (Start failed
    with "Could not get model 'None'"), saved in the recent models, and the page said ready. The id is
    kept; one neither in the cache nor reachable says so, and nothing says ready."""
    hub_cache(monkeypatch, tmp_path / "hub")
    project.load_demo()
    wait_checked(qtbot, project)
    type_model(qtbot, model_page, "BAAI/bge-small-en-v1.5")
    check = checked(qtbot, project, "BAAI/bge-small-en-v1.5")
    assert project.model == "BAAI/bge-small-en-v1.5"
    box = model_page.model_box.combo.currentText()
    assert "BAAI/bge-small-en-v1.5" in box and "None" not in box
    assert "not on this machine" in check.problem and "no internet" in check.problem
    assert "no internet" in model_page.model_box.info.text()
    assert project.blocking_problem() == check.problem
    assert "Ready" not in model_page.blocking.text() and "no internet" in model_page.blocking.text()
    assert not {"None", "BAAI/bge-small-en-v1.5"} & set(project.settings.recent("models"))
    shot(model_page, screenshots, "model_hub_id_offline")
    wait_idle(qtbot, project)


def test_hub_id_in_the_cache_is_ready_with_its_summary(qtbot, model_page, project, monkeypatch, tmp_path,
                                                       screenshots):
    hub_cache(monkeypatch, tmp_path / "hub", "BAAI/bge-small-en-v1.5")
    project.load_demo()
    wait_checked(qtbot, project)
    type_model(qtbot, model_page, "BAAI/bge-small-en-v1.5")
    check = checked(qtbot, project, "BAAI/bge-small-en-v1.5")
    assert check.problem is None and check.where == "cache"
    assert model_page.summary.model_type == "bert"
    info = model_page.model_box.info.text()
    assert "BERT" in info and "Hugging Face cache" in info and "English retrieval" in info   # what it is good for
    wait_checked(qtbot, project)
    assert project.blocking_problem() is None and "Ready to train" in model_page.blocking.text()
    assert project.settings.recent("models")[0] == "BAAI/bge-small-en-v1.5"
    shot(model_page, screenshots, "model_hub_id_cached")
    wait_idle(qtbot, project)


def test_model_box_checks_folders(qtbot, model_page, project, tmp_path):
    type_model(qtbot, model_page, str(tmp_path / "nope"))
    assert "There is no folder" in checked(qtbot, project, str(tmp_path / "nope")).problem
    (tmp_path / "empty").mkdir()
    type_model(qtbot, model_page, str(tmp_path / "empty"))
    assert "has no config.json" in checked(qtbot, project, str(tmp_path / "empty")).problem
    good = model_files(tmp_path / "mine")
    type_model(qtbot, model_page, str(good))
    check = checked(qtbot, project, str(good))
    assert check.problem is None and check.where == "folder" and str(good) in model_page.model_box.info.text()
    assert project.settings.recent("models")[0] == str(good)   # offered again, unlike the two that failed
    assert model_page.model_box.combo.findData(str(good)) >= 0
    wait_idle(qtbot, project)


def test_model_box_recommends_models_with_sizes(qtbot, model_page, project, screenshots):
    from engine.models import family_specs
    combo = model_page.model_box.combo
    items = [combo.itemText(i) for i in range(combo.count())]
    assert items[0].startswith("all-MiniLM-L6-v2 (built in) — 22.7M, BERT") and combo.itemData(0) == "default"
    for start in ("BAAI/bge-small-en-v1.5 — 33.4M, BERT", "answerdotai/ModernBERT-base — 149M, ModernBERT",
                  "google/embeddinggemma-300m — 308M, Gemma 3", "Qwen/Qwen3-Embedding-0.6B — 596M, Qwen3"):
        assert any(item.startswith(start) for item in items), (start, items)
    listed = {combo.itemData(i) for i in range(combo.count())}
    assert {r.model_id for s in family_specs().values() for r in s.recommended} - listed == \
        {"sentence-transformers/all-MiniLM-L6-v2"}   # listed as "default", the built-in copy
    combo.showPopup()
    shot(combo.view(), screenshots, "model_box_recommended")
    combo.hidePopup()
    index = combo.findData("google/embeddinggemma-300m")
    combo.setCurrentIndex(index)
    combo.activated.emit(index)
    assert project.model == "google/embeddinggemma-300m"
    wait_idle(qtbot, project)


def test_check_model_asks_the_hub_for_ids_not_in_the_cache(monkeypatch, tmp_path):
    """Online, an id that is not cached is looked up (its config.json read for the preset); an unknown id
    and a failed connection each say so."""
    from types import SimpleNamespace

    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    from raclate_app.model_info import check_model
    hub_cache(monkeypatch, tmp_path, offline=False)

    def download(repo_id, filename, **_kw):   # what hf_hub_download leaves: config.json alone in the cache
        from engine.defaults import default_model_dir
        repo = tmp_path / f"models--{repo_id.replace('/', '--')}"
        (repo / "snapshots" / "c0ffee").mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("c0ffee")
        target = repo / "snapshots" / "c0ffee" / filename
        target.write_text((default_model_dir() / filename).read_text())
        return str(target)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "model_info",
                        lambda repo_id, **_kw: SimpleNamespace(safetensors=SimpleNamespace(total=33_360_000)))
    found = check_model("BAAI/bge-small-en-v1.5")
    assert found.problem is None and found.where == "hub"
    assert found.summary.model_type == "bert" and found.summary.parameters == 33_360_000

    def missing(repo_id, **_kw):
        err = RepositoryNotFoundError.__new__(RepositoryNotFoundError)
        Exception.__init__(err, "404")
        raise err
    monkeypatch.setattr(huggingface_hub, "model_info", missing)
    assert "There is no model nobody/nothing" in check_model("nobody/nothing").problem

    def unreachable(repo_id, **_kw):
        raise ConnectionError("Name or service not known")
    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    assert "no internet" in check_model("nobody/else").problem
    assert "neither a folder nor a Hub id" in check_model("not an id").problem


def test_app_demo_trains_as_the_headless_demo(qtbot, window, screenshots):
    """The app's demo dataset is the headless demo's retrieval job, with its settings (README: the numbers
    before and after fine-tuning), and its own held-out questions."""
    from engine.demo import JOBS
    from engine.training.config import build_run_config
    p, page = window.project, window.pages["model"]
    window.load_demo()
    wait_checked(qtbot, p)
    qtbot.waitUntil(lambda: page.summary is not None, timeout=20_000)
    assert p.has_validation_split and p.data_args()["validation_split"] == 0.0
    assert p.blocking_problem() is None
    headless = build_run_config(model="default", task="sentence-similarity", data=p.source, output_dir="x",
                                **JOBS["retrieval"].training).training
    app = build_run_config(p.run_config("x")).training
    for name in ("num_train_epochs", "lr_scheduler_type", "warmup_ratio", "batch_size", "learning_rate", "max_length"):
        assert getattr(app, name) == getattr(headless, name), name
    window.go_to("model")
    page.advanced_toggle.click()
    shot(window, screenshots, "model_demo_settings")
    wait_idle(qtbot, p)
