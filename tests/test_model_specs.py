"""Every family declares a FamilySpec the registry, the run-config builder and the app read."""
import json

import pytest

from engine import models
from engine.errors import ModelError
from engine.models import FamilySpec, family_specs, get_family, preset_for, spec_for, supported_model_types
from engine.tasks import EMBEDDING_TASKS, TASKS


def test_every_family_has_a_spec_with_presets():
    specs = family_specs()
    assert list(specs) == list(models.FAMILIES)
    for model_type, spec in specs.items():
        family = get_family(model_type)
        assert isinstance(spec, FamilySpec) and spec is family.SPEC and spec.model_type == model_type
        assert spec.name and spec.architectures["base"]
        assert set(spec.presets) == {"batch_size", "learning_rate", "max_length"}
        assert set(spec.tasks) == set(EMBEDDING_TASKS) | set(family.TASK_MODELS)
        assert set(spec.architectures) - {"base"} == set(family.TASK_MODELS) and set(spec.tasks) <= set(TASKS)
        assert spec.embedding_weights and spec.default_pooling in ("mean", "cls", "max", "lasttoken")


def test_embedding_weights_name_the_input_embeddings_only():
    """``embedding_weights`` prefixes match backbone weights, and never a final norm (LFM2's
    ``embedding_norm`` is one despite its name)."""
    from mlx.utils import tree_flatten
    for model_type, spec in family_specs().items():
        family = get_family(model_type)
        args = family.ModelArgs.from_config(family.configure(_tiny_config(model_type)))
        names = [k for k, _ in tree_flatten(family.Model(args).parameters())]
        chosen = [k for k in names if k.startswith(spec.embedding_weights)]
        assert chosen and all("embed" in k for k in chosen), (model_type, chosen)
        assert not any(k.startswith("embedding_norm.") for k in chosen)  # LFM2's final norm


def _tiny_config(model_type: str) -> dict:
    small = {"vocab_size": 32, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8, "max_position_embeddings": 64}
    if model_type == "t5gemma":
        return {"model_type": "t5gemma", "encoder": small}
    return {"model_type": model_type, **small}


@pytest.mark.parametrize("alias", ["gemma3", "embeddinggemma"])
def test_aliases_resolve_to_their_family(alias):
    assert spec_for(alias) is spec_for("gemma3_text")
    assert get_family(alias).SPEC.model_type == "gemma3_text"
    assert alias in supported_model_types()


def test_unknown_model_type():
    assert spec_for("gpt2") is None
    with pytest.raises(ModelError, match="not supported"):
        get_family("gpt2")


def test_preset_for_reads_config_json_only(tmp_path):
    assert preset_for("default") == family_specs()["bert"].presets   # the embedded MiniLM is a BERT
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "embeddinggemma", "max_position_embeddings": 128}))
    assert preset_for(str(tmp_path)) == dict(spec_for("gemma3_text").presets, max_length=128)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert preset_for(str(tmp_path)) == {}
    assert preset_for(str(tmp_path / "missing")) == {}
    assert preset_for("nobody/not-in-the-cache") == {}
