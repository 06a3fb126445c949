"""`raclate export --model O --to DIR [--format sentence-transformers|pylate|transformers|onnx|gguf|peft|mlx|coreml]
[--quantize int8|int4|f16|q8_0]
[--push-to-hub REPO]`

Writes a folder its library loads with no custom code, reloads it there and compares outputs with
the MLX model on a few texts (a mismatch fails the command), writes the model card, and pushes it
to the Hub when asked. Prints the result (JSON off a terminal)."""
from __future__ import annotations

from engine.commands import dumps, guarded, on_terminal
FORMATS = ("sentence-transformers", "pylate", "transformers", "onnx", "gguf", "peft", "mlx", "coreml")  # engine.outputs.export.FORMATS (kept light)
QUANTIZE = ("int8", "int4", "f16", "q8_0")   # each runtime module's refusal() says which it takes


def add_parser(sub) -> None:
    import argparse
    p = sub.add_parser("export", help="Write a model folder for sentence-transformers, PyLate or transformers.",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="A model folder (e.g. a training --output), a Hub id, or 'default'.")
    p.add_argument("--to", required=True, metavar="DIR", help="The new folder.")
    p.add_argument("--format", default=None, choices=FORMATS,
                   help="Default: the task's own library (dense embeddings → sentence-transformers, late interaction "
                        "→ pylate, heads → transformers); 'transformers' also writes an embedding model's bare encoder; "
                        "'onnx' (BERT embedding and classification models) adds onnx/model.onnx, checked with onnxruntime; "
                        "'gguf' (BERT embedding models) writes model.gguf for llama.cpp; 'peft' (a checkpoint of a run trained "
                        "with --lora-rank, RUN/checkpoints/step-N) writes the adapter alone, as peft saves one; 'mlx' (BERT, "
                        "ModernBERT, Qwen3 embedding models) writes a folder mlx-embeddings loads; 'coreml' (BERT and ModernBERT "
                        "embedding and classification models) writes model.mlpackage for Core ML.")
    p.add_argument("--quantize", default=None, choices=QUANTIZE,
                   help="onnx: int8 (also write int8 files, dynamic quantization); gguf: f16 or q8_0 (default f32); "
                        "mlx: int8 or int4 (mlx's affine quantization); coreml: f16 (fp16 compute, norms and softmax in fp32). "
                        "Quantized files are checked by cosine and retrieval agreement.")
    p.add_argument("--task", default=None, help="The model's task (default: read from the folder).")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="Upload the folder to this Hub repository (USER/NAME).")
    p.add_argument("--private", action="store_true", help="Create the Hub repository as private.")
    p.add_argument("--overwrite", action="store_true", help="Replace --to if it exists.")
    p.add_argument("--json", action="store_true", help="Print JSON even on a terminal.")
    p.add_argument("--debug", action="store_true", help="Show tracebacks on errors.")
    p.set_defaults(run=guarded(run))


def run(ns) -> int:
    from engine.outputs.export import export_model, summary
    result = export_model(ns.model, ns.to, fmt=ns.format, task=ns.task, push_to_hub=ns.push_to_hub,
                          private=ns.private, overwrite=ns.overwrite, quantize=ns.quantize)
    if on_terminal(ns):
        check = result["check"]
        print(f"exported {ns.model} ({result['task']}) to {result['output_dir']} as {result['format']}")
        print(f"  {summary(check)}")
        for key in ("pooling", "normalize", "prompts"):
            if key in check:
                print(f"  {key}: {check[key]}")
        if "hub" in result:
            print(f"  pushed to {result['hub']['url']} ({'private' if result['hub']['private'] else 'public'})")
    else:
        print(dumps(result))
    return 0
