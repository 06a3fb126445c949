"""Hub push through a fake HfApi (offline): what would be created and uploaded, the model card
included and checkpoints left out; a missing token fails before any work, for export and train."""
import json

import pytest

import engine.outputs.hub as hub
from engine.cli import main
from engine.defaults import RESOURCES_DIR
from engine.outputs.export import export_model
from engine.errors import HubError

PAIRS = str(RESOURCES_DIR / "demo" / "pairs.jsonl")


class FakeApi:
    """Records calls; ``upload_folder`` lists the files the real one would send."""
    calls: list = []

    def __init__(self, token, fail=False):
        self.token, self.fail = token, fail

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kw):
        if self.fail:
            raise ConnectionError("the network is down")
        from huggingface_hub.utils import filter_repo_objects
        from pathlib import Path
        root = Path(kw["folder_path"])
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        kw["uploaded"] = list(filter_repo_objects(files, ignore_patterns=kw.get("ignore_patterns")))
        FakeApi.calls.append(("upload_folder", kw["repo_id"], kw))


@pytest.fixture
def fake_hub(monkeypatch):
    FakeApi.calls = []
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token")
    monkeypatch.setattr(hub, "make_api", lambda token: FakeApi(token))
    return FakeApi


@pytest.fixture
def no_token(monkeypatch):
    import huggingface_hub
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    monkeypatch.setattr(hub, "make_api", lambda token: pytest.fail("no API call may happen without a token"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.test_export import tiny_checkpoint
    return tiny_checkpoint("bert", tmp_path_factory.mktemp("tiny"))


def test_export_pushes_folder_with_card(fake_hub, tiny, tmp_path):
    result = export_model(str(tiny), tmp_path / "out", push_to_hub="alice/tiny-minilm", private=True)
    (kind, repo, kw), (kind2, repo2, up) = fake_hub.calls
    assert (kind, repo, kind2, repo2) == ("create_repo", "alice/tiny-minilm", "upload_folder", "alice/tiny-minilm")
    assert kw["private"] is True and kw["exist_ok"] is True and kw["repo_type"] == "model"
    assert up["folder_path"] == str(tmp_path / "out")
    assert {"README.md", "config.json", "model.safetensors", "modules.json", "tokenizer.json",
            "raclate_run.json", "1_Pooling/config.json"} <= set(up["uploaded"])
    assert result["hub"]["files"] == up["uploaded"] and result["hub"]["private"] is True
    card = (tmp_path / "out" / "README.md").read_text()
    assert "# alice/tiny-minilm" in card and 'SentenceTransformer("alice/tiny-minilm")' in card


def test_missing_token_fails_before_any_work(no_token, tiny, tmp_path, capsys):
    with pytest.raises(HubError, match="No Hugging Face token"):
        export_model(str(tiny), tmp_path / "out", push_to_hub="alice/x")
    assert not (tmp_path / "out").exists()
    assert main(["export", "--model", str(tiny), "--to", str(tmp_path / "out"), "--push-to-hub", "alice/x"]) == 2
    err = capsys.readouterr().err
    assert "No Hugging Face token" in err and "huggingface-cli login" in err and not (tmp_path / "out").exists()


def test_train_without_token_fails_at_the_start(no_token, tiny, tmp_path, capsys):
    code = main(["train", "--model", str(tiny), "--task", "sentence-similarity", "--data", PAIRS,
                 "--output", str(tmp_path / "run"), "--max-steps", "1", "--push-to-hub", "alice/x"])
    assert code != 0 and "No Hugging Face token" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_repo_id_is_refused(fake_hub):
    for bad in ("no-owner", "a/b/c", "bad name/x"):
        with pytest.raises(HubError, match="not a valid Hub repository id"):
            hub.check_push(bad)
    assert fake_hub.calls == []


def test_upload_failure_is_a_clear_error(monkeypatch, tiny, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token")
    monkeypatch.setattr(hub, "make_api", lambda token: FakeApi(token, fail=True))
    with pytest.raises(HubError, match="Uploading .* failed .*network is down.*saved locally"):
        export_model(str(tiny), tmp_path / "out", push_to_hub="alice/x")
    assert (tmp_path / "out" / "README.md").exists()


def test_train_pushes_the_final_model_without_checkpoints(fake_hub, tiny, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", str(tiny), "--task", "sentence-similarity", "--data", PAIRS, "--max-rows", "24",
                 "--batch-size", "8", "--max-steps", "1", "--output", str(out), "--push-to-hub", "alice/run",
                 "--hub-private"])
    assert code == 0, capsys.readouterr().err
    (_, _, kw), (_, _, up) = fake_hub.calls
    assert kw["private"] is True
    assert (out / "checkpoints").is_dir() and not any(f.startswith("checkpoints/") for f in up["uploaded"])
    assert {"README.md", "raclate_run.json", "model.safetensors"} <= set(up["uploaded"])
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["hub"]["repo_id"] == "alice/run" and record["export"]["ok"]
    assert "fine-tuned from" in (out / "README.md").read_text()
