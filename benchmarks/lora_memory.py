"""Peak memory and examples/s: full fine-tuning vs LoRA, DoRA and QLoRA on a Qwen3-shaped embedding model with
random weights and Qwen3-Embedding-0.6B's real shapes (hidden 1024, 16 query / 8 key-value heads of 128,
MLP 3072, vocabulary 151,669), fewer layers by default. Each configuration runs in its own process, one
after the other, in one run (clean peak memory; compare only numbers from the same run).

    python benchmarks/lora_memory.py [--layers 4] [--batch-size 8] [--max-length 128] [--steps 12] [--rank 16]
        [--kinds full,lora,dora,qlora4,qlora8]

Training: MNRL on the demo question/answer pairs, AdamW, the engine's compiled step. Columns: trainable
parameters, examples/s over the steps after the first 2 (compilation), the memory the model holds when
ready to train, and MLX's peak memory from that moment (the adapters added and, for QLoRA, the base quantized: loading
itself reads the float weights in every kind).
"""
from __future__ import annotations

import argparse
import gc
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {"model_type": "qwen3", "architectures": ["Qwen3Model"], "vocab_size": 151_669, "hidden_size": 1024,
          "intermediate_size": 3072, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
          "hidden_act": "silu", "max_position_embeddings": 32_768, "rms_norm_eps": 1e-6, "rope_theta": 1_000_000,
          "tie_word_embeddings": True, "pad_token_id": 0}
KINDS = {"full": {}, "lora": {"lora_rank": None}, "dora": {"lora_rank": None, "dora": True},
         "qlora4": {"lora_rank": None, "quantize_base": 4}, "qlora8": {"lora_rank": None, "quantize_base": 8}}


def make_model(folder: Path, layers: int) -> None:
    """Random weights in Qwen3's layout, with the bundled tokenizer (its ids fit the vocabulary)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from engine.defaults import default_model_dir
    from engine.models import qwen3
    config = dict(CONFIG, num_hidden_layers=layers)
    mx.random.seed(0)
    model = qwen3.Model(qwen3.ModelArgs.from_config(config))
    folder.mkdir(parents=True)
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(model.parameters())),
                        metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(default_model_dir() / name, folder / name)


def run_one(folder: str, kind: str, args) -> dict:
    import datasets
    import mlx.core as mx
    from engine.defaults import RESOURCES_DIR
    from engine.models import load_model
    from engine.models.adapters import apply_training_adapters
    from engine.training.args import TrainingArgs
    from engine.training.trainer import Trainer
    lines = (RESOURCES_DIR / "demo" / "pairs.jsonl").read_text().splitlines()
    rows = [{"text": r["question"], "text_pair": r["answer"]} for r in map(json.loads, lines)]
    extra = {k: (args.rank if v is None else v) for k, v in KINDS[kind].items()}
    model, tok = load_model(folder, "feature-extraction")
    events = []
    training = TrainingArgs(batch_size=args.batch_size, max_length=args.max_length, max_steps=args.steps,
                            logging_steps=1, save_steps=0, learning_rate=1e-4, **extra)
    apply_training_adapters(model, training.to_dict())   # the Trainer keeps what it finds
    gc.collect()
    mx.clear_cache()
    mx.reset_peak_memory()
    ready = mx.get_active_memory()
    trainer = Trainer(model, tok, "feature-extraction", training, datasets.Dataset.from_list(rows),
                      callbacks=[events.append])
    trainer.train()
    steps = [e for e in events if e["event"] == "step"][2:]
    started = next(e for e in events if e["event"] == "run_started")
    return {"kind": kind, "trainable": started["trainable_parameters"],
            "examples_per_s": sum(s["examples_per_s"] for s in steps) / len(steps),
            "ready_gb": ready / 1e9, "peak_memory_gb": mx.get_peak_memory() / 1e9}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--kinds", default="full,lora,dora,qlora4,qlora8")
    p.add_argument("--child", nargs=2, metavar=("FOLDER", "KIND"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_one(*args.child, args)))
        return
    from engine.models.loading import safetensors_parameters
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "qwen3-shaped"
        make_model(folder, args.layers)
        parameters = safetensors_parameters(folder)   # the float model's count (a quantized base packs 8 in one)
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("child", "kinds")]
        results = []
        for kind in args.kinds.split(","):
            out = subprocess.run([sys.executable, __file__, *flags, "--child", str(folder), kind], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"Qwen3-shaped, {args.layers} layers, {parameters / 1e6:.0f}M parameters; batch {args.batch_size} "
          f"pairs × {args.max_length} tokens; rank {args.rank}")
    print(f"{'kind':7} {'trainable':>12} {'examples/s':>11} {'model GB':>9} {'peak GB':>8}")
    for r in results:
        print(f"{r['kind']:7} {r['trainable']:>12,} {r['examples_per_s']:>11.2f} {r['ready_gb']:>9.2f} "
              f"{r['peak_memory_gb']:>8.2f}")


if __name__ == "__main__":
    main()
