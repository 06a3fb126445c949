"""`raclate export --overwrite` replaces only what this program wrote, by rename, and never the model
it reads (issue: an export deleted any folder named by --to before loading anything)."""
import json

import pytest

from engine.cli import main
from engine.outputs import export as export_module
from tests.test_export import tiny_checkpoint

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return tiny_checkpoint("bert", tmp_path_factory.mktemp("models") / "src")


def tree(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_overwrite_refuses_a_folder_it_did_not_write(source, tmp_path, capsys):
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "notes.txt").write_text("mine")
    before = tree(home)
    assert main(["export", "--model", str(source), "--to", str(home), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "not written by RACLATE" in err and "nothing was deleted" in err
    assert tree(home) == before and (home / "notes.txt").read_text() == "mine"


def test_overwrite_refuses_the_model_and_the_folder_holding_it(source, capsys):
    before = tree(source.parent)
    for target in (source, source.parent):
        (target / "raclate_run.json").write_text("{}") if target == source.parent else None
        assert main(["export", "--model", str(source), "--to", str(target), "--overwrite"]) == 2
        assert "holds the model being exported" in capsys.readouterr().err
    (source.parent / "raclate_run.json").unlink()
    assert tree(source.parent) == before


def test_overwrite_replaces_an_earlier_export_whole(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "--model", str(source), "--to", str(out), "--json"]) == 0
    assert (out / "modules.json").exists() and (out / "1_Pooling").is_dir()
    # Same folder, another layout: nothing of the sentence-transformers export may stay behind.
    assert main(["export", "--model", str(source), "--to", str(out), "--format", "transformers",
                 "--overwrite", "--json"]) == 0
    assert not (out / "modules.json").exists() and not (out / "1_Pooling").exists()
    assert json.loads((out / "raclate_run.json").read_text())["export"]["ok"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]   # no staging folder left beside it
    capsys.readouterr()


def test_a_failed_check_keeps_the_earlier_export(source, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert main(["export", "--model", str(source), "--to", str(out), "--json"]) == 0
    before = {p: (out / p).read_bytes() for p in tree(out) if (out / p).is_file()}
    real = export_module.self_check

    def failing(*args, **kwargs):
        return {**real(*args, **kwargs), "ok": False}

    monkeypatch.setattr(export_module, "self_check", failing)
    assert main(["export", "--model", str(source), "--to", str(out), "--overwrite"]) == 1
    assert "kept as it was" in capsys.readouterr().err
    assert {p: (out / p).read_bytes() for p in tree(out) if (out / p).is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
