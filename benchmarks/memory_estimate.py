"""The Model page's memory formula (engine/models/memory.py) against the peak `--batch-size auto`
measures (engine/training/batch_planner.py step_peak): MNRL on pairs whose texts all fill max_length,
for the embedded MiniLM, a random ModernBERT 6L/384 and a random Qwen3-shaped model (768 hidden, 8 layers,
GQA 12/4 heads, Qwen3's vocabulary).

    python benchmarks/memory_estimate.py [--batch-sizes 8,32] [--max-length 64] [--models minilm,modernbert,qwen3]
"""
from __future__ import annotations

import argparse
import gc

import engine  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx
from mlx.utils import tree_flatten

from engine.losses import select_loss
from engine.models import get_family, load_model
from engine.models.base import ModelInfo
from engine.models.heads import EmbeddingModel
from engine.models.memory import OVERHEAD, estimate, human_bytes
from engine.training.args import TrainingArgs
from engine.training.batch_planner import step_peak

RANDOM = {
    "modernbert": dict(model_type="modernbert", vocab_size=50368, hidden_size=384, intermediate_size=576,
                       num_hidden_layers=6, num_attention_heads=6, max_position_embeddings=8192, local_attention=128),
    "qwen3": dict(model_type="qwen3", vocab_size=151936, hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
                  num_attention_heads=12, num_key_value_heads=4, head_dim=64, max_position_embeddings=32768,
                  rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
}


def build(name: str):
    if name == "minilm":
        return load_model("default", "sentence-similarity")[0]
    family = get_family(RANDOM[name]["model_type"])
    cfg = family.configure(dict(RANDOM[name]))
    args = family.ModelArgs.from_config(cfg)
    model = EmbeddingModel(family.Model(args), family.SPEC.default_pooling)
    model.info = ModelInfo(family=family, config=cfg, args=args, task="sentence-similarity")
    mx.eval(model.parameters())
    return model


def pairs(vocab: int, batch: int, length: int) -> dict:
    """A batch of anchor/positive pairs, every text max_length tokens (the formula's worst case)."""
    texts = [{"input_ids": mx.random.randint(5, vocab, (batch, length)).astype(mx.int32),
              "attention_mask": mx.ones((batch, length), dtype=mx.int32)} for _ in range(2)]
    return {"inputs": texts, "hashes": [mx.arange(batch, dtype=mx.int32) + 1000 * i for i in range(2)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--models", default="minilm,modernbert,qwen3")
    ns = parser.parse_args()
    args = TrainingArgs(max_length=ns.max_length)
    loss = select_loss("sentence-similarity", scored=False, use_late_interaction=False, num_negatives=0,
                       is_regression=False)
    # The estimate adds OVERHEAD for the process (interpreter, tokenizer, data); MLX's peak holds arrays only.
    print(f"| model | parameters | batch × {ns.max_length} tokens (pairs) | estimate | estimate less the "
          f"{human_bytes(OVERHEAD)} process overhead | measured MLX peak | (estimate − overhead) / measured |")
    print("|---|---|---|---|---|---|---|")
    for name in ns.models.split(","):
        model = build(name)
        model.train()
        config = model.info.config
        count = sum(v.size for _, v in tree_flatten(model.parameters()))
        for batch in (int(b) for b in ns.batch_sizes.split(",")):
            est = estimate(config, count, batch, ns.max_length, texts_per_example=2).total
            peak = step_peak(model, loss, args, pairs(config["vocab_size"], batch, ns.max_length))
            print(f"| {name} | {count / 1e6:.1f}M | {batch} | {human_bytes(est)} | {human_bytes(est - OVERHEAD)} | "
                  f"{human_bytes(peak)} | {(est - OVERHEAD) / peak:.2f} |", flush=True)
        del model
        gc.collect()
        mx.clear_cache()


if __name__ == "__main__":
    main()
