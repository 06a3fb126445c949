"""Core ML export: an ``.mlpackage`` (ML program) built op by op with coremltools' MIL builder from the
engine's weights (no torch), for BERT and ModernBERT embedding and text-classification models.

    model.mlpackage      inputs ``input_ids``, ``attention_mask`` (+ ``token_type_ids`` for BERT), int32,
                         flexible shape (1…64 texts, 1…max length tokens); output ``sentence_embedding``
                         [batch, dim] (pooling, Dense layers, normalisation inside) or ``logits`` [batch, labels]
    tokenizer files      the model's tokenizer (tokenizer.json: swift-transformers reads it)

fp16 overflow: compute is fp32 by default. ``--quantize f16`` computes in fp16 except the ops whose
intermediates overflow or lose most there, which stay fp32: the layer norms (their variance squares the
residual stream), the attention scores with their mask and softmax, pooling sums and the L2 norm.

The program is written op by op through ``MilOps`` (which tags the ops that stay fp32). Core ML itself runs
on macOS only; everywhere the self-check reads the saved package back (inputs, outputs, flexible shapes, op
list, the dtype of each op) and runs its program, weights from the package's weight file, in numpy
(``run_package``: each MIL op as numpy computes it, in the dtype the program gives it, so fp16 rounds as
fp16). On macOS it also runs ``MLModel.predict``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import platform
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

import mlx.core as mx
from mlx.utils import tree_flatten

from engine.inference import max_length_of
from engine.models.heads import Classifier, EmbeddingModel
from engine.outputs.onnx import EXTRA_TEXTS, batches, cosines

INSTALL = "pip install 'raclate-tuner[coreml]'"
FILE = "model.mlpackage"
FAMILIES = ("bert", "modernbert")
WITH_LIBRARY_FILES = False      # the package, the tokenizer files, README and raclate_run.json
MAX_BATCH = 64                  # the flexible batch dimension's upper bound
COSINE_MIN = 0.9999             # fp32: per row
MAX_ABS = 1e-4                  # fp32 logits: |Δ| ≤ 1e-4 · max(1, largest |logit|)
F16_COSINE = 0.999              # f16: worst row's cosine (embeddings or logits)
KEEP_FP32 = "_fp32"             # op-name suffix: the f16 program keeps these ops in fp32
DENSE = {"torch.nn.modules.linear.Identity": "identity", "torch.nn.modules.activation.Tanh": "tanh"}
GELU = {"gelu": "EXACT", "gelu_new": "TANH_APPROXIMATION", "gelu_pytorch_tanh": "TANH_APPROXIMATION"}


# -- before any work -----------------------------------------------------------------------------
def missing() -> str | None:
    return None if importlib.util.find_spec("coremltools") else \
        f"The Core ML export needs coremltools: {INSTALL}"


def refusal(model, quantize: str | None) -> str | None:
    cfg = model.info.config
    family = cfg.get("model_type")
    if family not in FAMILIES:
        return f"The Core ML export supports the {', '.join(FAMILIES)} families, not {family!r}."
    if model.info.late_interaction:
        return "The Core ML export does not cover late-interaction (ColBERT) models."
    if isinstance(model, EmbeddingModel):
        if model.pooling not in ("mean", "cls"):
            return f"The Core ML export pools by mean or CLS, not {model.pooling}."
        if any(layer.activation_function not in DENSE for layer in model.dense):
            return "The Core ML export has no form of this model's Dense activations."
    elif not (isinstance(model, Classifier) and model.info.task == "text-classification"
              and model.classifier_pooling in ("pooler", "cls", "mean")):
        return f"The Core ML export covers embedding and text-classification models, not {model.info.task}."
    act = cfg.get("hidden_act" if family == "bert" else "hidden_activation", "gelu")
    if act not in GELU or cfg.get("classifier_activation", "gelu") not in GELU:
        return f"The Core ML export has no form of the activation {act!r}."
    if quantize not in (None, "f16"):
        return f"The Core ML export computes in fp32, or fp16 with --quantize f16; not {quantize}."
    return None


# -- the program, op by op -----------------------------------------------------------------------
class MilOps:
    """Each step as MIL operations (inside ``mb.program``); names ending in KEEP_FP32 stay fp32."""

    def __init__(self):
        from coremltools.converters.mil import Builder as mb
        self.mb, self.count = mb, 0

    def _name(self, kind: str, keep32: bool) -> str:
        self.count += 1
        return f"{kind}_{self.count}" + (KEEP_FP32 if keep32 else "")

    def const(self, value):
        return self.mb.const(val=np.asarray(value), name=self._name("const", False))

    def linear(self, x, w, b=None):
        return self.mb.linear(x=x, weight=w, bias=b, name=self._name("linear", False))

    def matmul(self, x, y, transpose_y=False, keep32=False):
        return self.mb.matmul(x=x, y=y, transpose_y=transpose_y, name=self._name("matmul", keep32))

    def binary(self, kind: str, x, y, keep32=False):   # add, sub, mul, real_div, maximum
        return getattr(self.mb, kind)(x=x, y=y, name=self._name(kind, keep32))

    def unary(self, kind: str, x, keep32=False):        # tanh, abs, sqrt
        return getattr(self.mb, kind)(x=x, name=self._name(kind, keep32))

    def gelu(self, x, mode: str):
        return self.mb.gelu(x=x, mode=mode, name=self._name("gelu", False))

    def layer_norm(self, x, gamma, beta, eps: float):
        return self.mb.layer_norm(x=x, axes=[-1], gamma=gamma, beta=beta, epsilon=eps, name=self._name("ln", True))

    def softmax(self, x):
        return self.mb.softmax(x=x, axis=-1, name=self._name("softmax", True))

    def gather(self, table, indices, axis=0):
        return self.mb.gather(x=table, indices=indices, axis=axis, name=self._name("gather", False))

    def float_of(self, x):
        return self.mb.cast(x=x, dtype="fp32", name=self._name("cast", True))

    def length(self, ids):
        """T of an (B, T) input, and the positions 0…T-1."""
        t = self.mb.gather(x=self.mb.shape(x=ids), indices=1, axis=0)
        return self.mb.range_1d(start=0, end=t, step=1, name=self._name("positions", False))

    def split_heads(self, x, heads: int, head_dim: int):
        """(B, T, H) → (B, nh, T, hd)."""
        shape = self.mb.concat(values=[self.mb.slice_by_index(x=self.mb.shape(x=x), begin=[0], end=[2]),
                                       np.array([heads, head_dim], np.int32)], axis=0)
        return self.mb.transpose(x=self.mb.reshape(x=x, shape=shape), perm=[0, 2, 1, 3])

    def merge_heads(self, x, hidden: int):
        """(B, nh, T, hd) → (B, T, H)."""
        x = self.mb.transpose(x=x, perm=[0, 2, 1, 3])
        shape = self.mb.concat(values=[self.mb.slice_by_index(x=self.mb.shape(x=x), begin=[0], end=[2]),
                                       np.array([hidden], np.int32)], axis=0)
        return self.mb.reshape(x=x, shape=shape)

    def expand(self, x, axes):
        return self.mb.expand_dims(x=x, axes=list(axes))

    def last_split(self, x, size: int):
        """x[..., :size], x[..., size:] of the last axis (ModernBERT's GeGLU, RoPE's halves)."""
        rank = x.rank
        begin, end = [0] * rank, [0] * rank
        mask = [True] * (rank - 1) + [False]
        first = self.mb.slice_by_index(x=x, begin=begin, end=end[:-1] + [size], end_mask=mask)
        second = self.mb.slice_by_index(x=x, begin=begin[:-1] + [size], end=end, begin_mask=mask,
                                        end_mask=[True] * rank)
        return first, second

    def concat_last(self, a, b):
        return self.mb.concat(values=[a, b], axis=-1)

    def first_token(self, x):
        return self.mb.squeeze(x=self.mb.slice_by_index(x=x, begin=[0, 0, 0], end=[0, 1, 0],
                                                        end_mask=[True, False, True]), axes=[1])

    def reduce_sum(self, x, axis: int, keep_dims=False):
        return self.mb.reduce_sum(x=x, axes=[axis], keep_dims=keep_dims, name=self._name("sum", True))

    def select_where(self, cond, x, fill: float):
        return self.mb.select(cond=cond, a=x, b=np.float32(fill), name=self._name("select", True))

    def less_equal(self, x, y):
        return self.mb.less_equal(x=x, y=y)

    def logical_and(self, x, y):
        return self.mb.logical_and(x=x, y=y)

    def is_one(self, mask):
        return self.mb.equal(x=mask, y=np.int32(1))

    def output(self, x, name: str):
        return self.mb.identity(x=x, name=name)


def _weights(module) -> dict[str, np.ndarray]:
    return {k: np.array(v.astype(mx.float32)) for k, v in tree_flatten(module.parameters())}


def _attention(ops, q, k, v, allowed, head_dim: int):
    """softmax(q·kᵀ/√d where allowed, else a large negative) · v, in fp32; (B, nh, T, hd)."""
    scores = ops.binary("mul", ops.matmul(q, k, transpose_y=True, keep32=True), np.float32(head_dim ** -0.5),
                        keep32=True)
    # a boolean select, not an additive mask: nothing in fp16 has to hold float32's minimum
    return ops.matmul(ops.softmax(ops.select_where(allowed, scores, -1e30)), v)


def _bert(ops, w: dict, cfg: dict, ids, mask, types):
    heads, hidden, eps = cfg["num_attention_heads"], cfg["hidden_size"], cfg.get("layer_norm_eps", 1e-12)
    hd, act = hidden // heads, GELU[cfg.get("hidden_act", "gelu")]
    x = ops.binary("add", ops.gather(w["embeddings.word_embeddings.weight"], ids),
                   ops.gather(w["embeddings.position_embeddings.weight"], ops.length(ids)))
    x = ops.binary("add", x, ops.gather(w["embeddings.token_type_embeddings.weight"], types))
    x = ops.layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)  # (B, T, H)
    allowed = ops.expand(ops.is_one(mask), (1, 2))                                                  # (B, 1, 1, T)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (ops.split_heads(ops.linear(x, w[p + f"attention.self.{n}.weight"], w[p + f"attention.self.{n}.bias"]),
                                   heads, hd) for n in ("query", "key", "value"))
        ctx = ops.merge_heads(_attention(ops, q, k, v, allowed, hd), hidden)
        out = ops.linear(ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
        x = ops.layer_norm(ops.binary("add", out, x), w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"], eps)
        mid = ops.gelu(ops.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]), act)
        out = ops.linear(mid, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
        x = ops.layer_norm(ops.binary("add", out, x), w[p + "output.LayerNorm.weight"],
                           w[p + "output.LayerNorm.bias"], eps)
    return x


def _rope_tables(head_dim: int, theta: float, length: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [positions, head_dim] of HF's rotate-half RoPE."""
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.outer(np.arange(length, dtype=np.float64), inv)
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _modernbert(ops, w: dict, cfg: dict, ids, mask, types=None):
    args_layers = cfg["_layer_types"]
    heads, hidden = cfg["num_attention_heads"], cfg["hidden_size"]
    hd, eps, act = hidden // heads, cfg.get("norm_eps", 1e-5), GELU[cfg.get("hidden_activation", "gelu")]
    bias = lambda name: w.get(name)  # noqa: E731 — norm_bias / attention_bias / mlp_bias may be off
    x = ops.layer_norm(ops.gather(w["embeddings.tok_embeddings.weight"], ids), w["embeddings.norm.weight"],
                       bias("embeddings.norm.bias"), eps)
    positions = ops.length(ids)
    keys = ops.expand(ops.is_one(mask), (1, 2))                                                     # (B, 1, 1, T)
    # |i - j| <= local_attention // 2 for the sliding layers (HF's bidirectional window)
    distance = ops.unary("abs", ops.binary("sub", ops.expand(positions, (1,)), ops.expand(positions, (0,))))
    band = ops.logical_and(keys, ops.less_equal(distance, np.int32(cfg.get("local_attention", 128) // 2)))
    rope = {}
    for kind, theta in cfg["_rope_theta"].items():
        cos, sin = _rope_tables(hd, theta, cfg["max_position_embeddings"])
        rope[kind] = (ops.gather(cos, positions), ops.gather(sin, positions))                        # (T, hd)

    def rotate(t, kind):
        cos, sin = rope[kind]
        first, second = ops.last_split(t, hd // 2)
        halves = ops.concat_last(ops.binary("mul", second, np.float32(-1.0)), first)
        return ops.binary("add", ops.binary("mul", t, cos), ops.binary("mul", halves, sin))

    for i, kind in enumerate(args_layers):
        p = f"layers.{i}."
        h = x if i == 0 else ops.layer_norm(x, w[p + "attn_norm.weight"], bias(p + "attn_norm.bias"), eps)
        qkv = ops.linear(h, w[p + "attn.Wqkv.weight"], bias(p + "attn.Wqkv.bias"))
        q, rest = ops.last_split(qkv, hidden)
        k, v = ops.last_split(rest, hidden)
        q, k, v = (ops.split_heads(t, heads, hd) for t in (q, k, v))
        ctx = _attention(ops, rotate(q, kind), rotate(k, kind), v, band if kind == "sliding_attention" else keys, hd)
        x = ops.binary("add", x, ops.linear(ops.merge_heads(ctx, hidden), w[p + "attn.Wo.weight"],
                                            bias(p + "attn.Wo.bias")))
        h = ops.layer_norm(x, w[p + "mlp_norm.weight"], bias(p + "mlp_norm.bias"), eps)
        gate_in, gate = ops.last_split(ops.linear(h, w[p + "mlp.Wi.weight"], bias(p + "mlp.Wi.bias")),
                                       cfg["intermediate_size"])
        x = ops.binary("add", x, ops.linear(ops.binary("mul", ops.gelu(gate_in, act), gate), w[p + "mlp.Wo.weight"],
                                            bias(p + "mlp.Wo.bias")))
    return ops.layer_norm(x, w["final_norm.weight"], bias("final_norm.bias"), eps)


def _pool(ops, x, mask, mode: str):
    if mode == "cls":
        return ops.first_token(x)
    m = ops.expand(ops.float_of(mask), (-1,))                                                       # (B, T, 1)
    total = ops.reduce_sum(ops.binary("mul", x, m, keep32=True), 1)
    return ops.binary("real_div", total, ops.binary("maximum", ops.reduce_sum(m, 1), np.float32(1e-9), keep32=True),
                      keep32=True)


def run_steps(ops, model, ids, mask, types=None):
    """The whole model on ``ops``: sentence embeddings or logits."""
    cfg = dict(model.info.config)
    family = cfg["model_type"]
    if family == "modernbert":
        args = model.info.family.ModelArgs.from_config(cfg)
        cfg.update(_layer_types=list(args.layer_types), _rope_theta=dict(args.rope_theta))
    w = _weights(model.backbone)
    x = (_bert if family == "bert" else _modernbert)(ops, w, cfg, ids, mask, types)
    if isinstance(model, Classifier):
        if model.classifier_pooling == "pooler":
            x = ops.unary("tanh", ops.linear(ops.first_token(x), w["pooler.dense.weight"], w["pooler.dense.bias"]))
        else:
            x = _pool(ops, x, mask, model.classifier_pooling)
        if "head" in model:
            hw, act = _weights(model.head), GELU[cfg.get("classifier_activation", "gelu")]
            x = ops.layer_norm(ops.gelu(ops.linear(x, hw["dense.weight"], hw.get("dense.bias")), act),
                               hw["norm.weight"], hw.get("norm.bias"), cfg.get("norm_eps", 1e-5))
        out = _weights(model[model.out_name])
        return ops.output(ops.linear(x, out["weight"], out.get("bias")), "logits")
    x = _pool(ops, x, mask, model.pooling)
    for layer in model.dense:
        dw = _weights(layer.linear)
        x = ops.linear(x, dw["weight"], dw.get("bias"))
        if DENSE[layer.activation_function] == "tanh":
            x = ops.unary("tanh", x)
    if model.normalize:
        norm = ops.unary("sqrt", ops.reduce_sum(ops.binary("mul", x, x, keep32=True), -1, keep_dims=True), keep32=True)
        x = ops.binary("real_div", x, ops.binary("maximum", norm, np.float32(1e-12), keep32=True), keep32=True)
    return ops.output(x, "sentence_embedding")


def input_names(model) -> list[str]:
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if model.info.config["model_type"] == "bert" else [])


@contextlib.contextmanager
def _quiet():
    """coremltools logs its Linux / torch-version notices, draws conversion progress bars on stderr and
    warns from inside its own passes."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def build(model, tokenizer, quantize: str | None):
    """The converted ``ct.models.MLModel`` (ML program, iOS 16 / macOS 13 and later)."""
    with _quiet():
        import coremltools as ct
        from coremltools.converters.mil import Builder as mb
        from coremltools.converters.mil.mil import get_new_symbol, types
    limit = max_length_of(model, tokenizer)
    shape = (ct.RangeDim(1, MAX_BATCH, 1), ct.RangeDim(1, limit, min(limit, 128)))
    names = input_names(model)

    batch, length = get_new_symbol(), get_new_symbol()
    specs = [mb.TensorSpec(shape=(batch, length), dtype=types.int32) for _ in names]
    if len(names) == 3:   # MIL names the inputs after the function's parameters
        @mb.program(input_specs=specs, opset_version=ct.target.iOS16)
        def program(input_ids, attention_mask, token_type_ids):
            return run_steps(MilOps(), model, input_ids, attention_mask, token_type_ids)
    else:
        @mb.program(input_specs=specs, opset_version=ct.target.iOS16)
        def program(input_ids, attention_mask):
            return run_steps(MilOps(), model, input_ids, attention_mask)

    if quantize == "f16":
        precision = ct.transform.FP16ComputePrecision(op_selector=lambda op: not op.name.endswith(KEEP_FP32))
    else:
        precision = ct.precision.FLOAT32
    with _quiet():
        return ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                          compute_precision=precision,
                          inputs=[ct.TensorType(name=n, shape=ct.Shape(shape), dtype=np.int32) for n in names])


def write(model, tokenizer, out: Path, quantize: str | None) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mlmodel = build(model, tokenizer, quantize)
    mlmodel.short_description = f"{model.info.config['model_type']} {model.info.task}, exported by RACLATE Tuner"
    with _quiet():
        mlmodel.save(str(out / FILE))
    tokenizer.save_pretrained(str(out))


# -- the self-check: the saved program run in numpy ----------------------------------------------
FLOAT32, FLOAT16 = 11, 10       # MIL proto DataType of an operation's output tensor
DTYPES = {"fp32": np.float32, "fp16": np.float16, "int32": np.int32, "bool": np.bool_}


def _ints(values) -> tuple:
    return tuple(int(v) for v in values)


def _slice(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    index = []
    for i in range(x.ndim):
        if squeeze_mask is not None and squeeze_mask[i]:
            index.append(int(begin[i]))
            continue
        index.append(slice(None if begin_mask is not None and begin_mask[i] else int(begin[i]),
                           None if end_mask is not None and end_mask[i] else int(end[i]),
                           1 if stride is None else int(stride[i])))
    return x[tuple(index)]


def _layer_norm(x, axes, gamma=None, beta=None, epsilon=1e-5):
    mean = x.mean(_ints(axes), keepdims=True)
    y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(_ints(axes), keepdims=True) + x.dtype.type(epsilon))
    return (y if gamma is None else y * gamma) + (0 if beta is None else beta)


def _gelu(x, mode="EXACT"):
    if mode == "EXACT":   # erf from mlx: numpy has none
        return (0.5 * x * (1 + np.array(mx.erf(mx.array(x / x.dtype.type(np.sqrt(2))))))).astype(x.dtype)
    inner = x.dtype.type(np.sqrt(2 / np.pi)) * (x + x.dtype.type(0.044715) * x ** 3)
    return (0.5 * x * (1 + np.tanh(inner))).astype(x.dtype)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(int(axis), keepdims=True))
    return e / e.sum(int(axis), keepdims=True)


# each MIL operation the converted programs hold, as numpy computes it (keyword names are MIL's)
MIL_NUMPY = {
    "gather": lambda x, indices, axis=0, batch_dims=0, validate_indices=False: np.take(x, indices, axis=int(axis)),
    "shape": lambda x: np.array(x.shape, np.int32),
    "range_1d": lambda end, start, step: np.arange(start, end, step, dtype=np.int32),
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y, "real_div": lambda x, y: x / y,
    "maximum": lambda x, y: np.maximum(x, y), "equal": lambda x, y: x == y, "less_equal": lambda x, y: x <= y,
    "logical_and": lambda x, y: np.logical_and(x, y), "select": lambda cond, a, b: np.where(cond, a, b),
    "sqrt": lambda x: np.sqrt(x), "tanh": lambda x: np.tanh(x), "abs": lambda x: np.abs(x), "identity": lambda x: x,
    "layer_norm": _layer_norm, "gelu": _gelu, "softmax": _softmax, "slice_by_index": _slice,
    "linear": lambda x, weight, bias=None: x @ weight.T + (0 if bias is None else bias),
    "matmul": lambda x, y, transpose_x=False, transpose_y=False: (np.swapaxes(x, -1, -2) if transpose_x else x) @ (
        np.swapaxes(y, -1, -2) if transpose_y else y),
    "expand_dims": lambda x, axes: np.expand_dims(x, _ints(axes)),
    "squeeze": lambda x, axes=None: np.squeeze(x, None if axes is None else _ints(axes)),
    "concat": lambda values, axis, interleave=False: np.concatenate(values, axis=int(axis)),
    "reshape": lambda x, shape: x.reshape(_ints(shape)),
    "transpose": lambda x, perm: x.transpose(_ints(perm)),
    "cast": lambda x, dtype: x.astype(DTYPES[str(dtype)]),
    "reduce_sum": lambda x, axes, keep_dims=False: x.sum(_ints(axes), keepdims=bool(keep_dims)),
}


def load_program(path: Path):
    """The MIL program of a saved package, its weights read from the package's weight file."""
    with _quiet():
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import load
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
        return load(spec, spec.specificationVersion, file_weights_dir=str(Path(path) / "Data/com.apple.CoreML/weights"))


def run_package(program, feeds: dict) -> np.ndarray:
    """The program's (first) output for ``feeds``, each op run in numpy in the dtype the program gives it."""
    function = program.functions["main"]
    values = dict(feeds)
    for op in function.operations:
        if op.op_type == "const":
            values[op.outputs[0].name] = np.asarray(op.outputs[0].val)
            continue
        args = {k: [values[v.name] for v in var] if isinstance(var, (list, tuple)) else values[var.name]
                for k, var in op.inputs.items()}
        values[op.outputs[0].name] = np.asarray(MIL_NUMPY[op.op_type](**args))
    return values[function.outputs[0].name].astype(np.float32)


def read_spec(path: Path, model) -> tuple[dict, list[str]]:
    """What the saved package declares (inputs, outputs, shape ranges, op counts, fp32 ops kept),
    and the problems found in it."""
    with _quiet():
        import coremltools as ct
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    want_out = "logits" if isinstance(model, Classifier) else "sentence_embedding"
    inputs = {i.name: [(r.lowerBound, r.upperBound) for r in i.type.multiArrayType.shapeRange.sizeRanges]
              for i in spec.description.input}
    outputs = [o.name for o in spec.description.output]
    function = spec.mlProgram.functions["main"]
    ops = function.block_specializations[function.opset].operations
    counts: dict[str, int] = {}
    for op in ops:
        counts[op.type] = counts.get(op.type, 0) + 1
    kept = [op for op in ops if any(o.name.endswith(KEEP_FP32) for o in op.outputs)]
    problems = []
    if list(inputs) != input_names(model):
        problems.append(f"inputs {list(inputs)}, not {input_names(model)}")
    if any(len(r) != 2 or r[0][0] != 1 or r[1][0] != 1 or r[1][1] < 2 for r in inputs.values()):
        problems.append(f"input shapes are not flexible: {inputs}")
    if outputs != [want_out]:
        problems.append(f"outputs {outputs}, not {[want_out]}")
    if any(o.type.tensorType.dataType != FLOAT32 for op in kept for o in op.outputs):
        problems.append("an op meant to stay fp32 (norm, softmax, pooling sum) computes in fp16")
    info = {"inputs": inputs, "outputs": outputs, "ops": counts, "fp32_ops": len(kept),
            "spec_version": spec.specificationVersion, "opset": function.opset}
    return info, problems


def _compare(model, ours: np.ndarray, theirs: np.ndarray, f16: bool) -> dict:
    diff, rows = float(np.abs(ours - theirs).max()), cosines(ours, theirs)
    scale = max(1.0, float(np.abs(ours).max()))
    ok = rows.min() >= (F16_COSINE if f16 else COSINE_MIN)
    if isinstance(model, Classifier) and not f16:
        ok = ok and diff <= MAX_ABS * scale
    return {"max_abs_diff": diff, "min_cosine": float(rows.min()), "ok": bool(ok)}


def tolerance(model, quantize: str | None) -> str:
    if quantize == "f16":
        return f"cosine ≥ {F16_COSINE} per row"
    return f"cosine ≥ {COSINE_MIN} per row" + (f", |Δ| ≤ {MAX_ABS:g} × max(1, largest logit)"
                                               if isinstance(model, Classifier) else "")


def check(model, tokenizer, out: Path, texts, quantize: str | None = None) -> dict:
    """The package's spec (inputs, outputs, flexible shapes, op list, fp32 ops kept), then outputs on
    ``texts`` plus a long (truncated) and a non-ASCII one, batched with padding (classifiers: pairs
    too): the saved program run in numpy everywhere, ``MLModel.predict`` on macOS."""
    path = Path(out) / FILE
    info, problems = read_spec(path, model)
    f16 = quantize == "f16"
    names = input_names(model)
    arrays = [[b[k].astype(np.int32) for k in names] for b in batches(model, tokenizer, list(texts) + list(EXTRA_TEXTS))]
    engine = [np.array(model(*(mx.array(a) for a in (arr if isinstance(model, Classifier) else arr[:2])))
                       .astype(mx.float32)) for arr in arrays]
    program = load_program(path)
    parts = {"package": [_compare(model, e, run_package(program, dict(zip(names, arr))), f16)
                         for e, arr in zip(engine, arrays)]}
    reference = f"coremltools {metadata.version('coremltools')}: the package read back, its program run in numpy"
    if platform.system() == "Darwin":
        import coremltools as ct
        package = ct.models.MLModel(str(path))
        key = info["outputs"][0]
        parts["predict"] = [_compare(model, e, package.predict(dict(zip(names, arr)))[key], f16)
                            for e, arr in zip(engine, arrays)]
        reference = f"coremltools {metadata.version('coremltools')} MLModel.predict (Core ML on macOS)"
    compared = {k: {"max_abs_diff": max(p["max_abs_diff"] for p in v), "min_cosine": min(p["min_cosine"] for p in v),
                    "ok": all(p["ok"] for p in v)} for k, v in parts.items()}
    main = compared.get("predict", compared["package"])
    report = {"reference": reference, "file": FILE, "quantize": quantize,
              "compared": "logits (texts and pairs)" if isinstance(model, Classifier) else "sentence embeddings",
              "max_abs_diff": main["max_abs_diff"], "min_cosine": main["min_cosine"],
              "tolerance": tolerance(model, quantize), "compute_precision": "float16 (norms, softmax, sums in float32)"
              if f16 else "float32", "runs": compared, "predicted": "predict" in compared, **info,
              "ok": not problems and all(c["ok"] for c in compared.values())}
    if isinstance(model, EmbeddingModel):
        report.update(pooling=model.pooling, normalize=model.normalize)
    if problems:
        report["detail"] = "; ".join(problems)
    return report


# -- the README section --------------------------------------------------------------------------
def card_section(model, check: dict, name: str) -> list[str]:
    out = check.get("outputs", ["sentence_embedding"])[0]
    names = input_names(model)
    feeds = ", ".join(f'"{n}": {n}' for n in names)
    tokens = check.get("inputs", {}).get(names[0], [(1, MAX_BATCH), (1, "max length")])[1][1]
    what = " (pooled, Dense layers and normalisation inside)." if isinstance(model, EmbeddingModel) else \
        " (softmax for probabilities)."
    lines = ["## Core ML", "",
             f"`{FILE}`: an ML program (iOS 16 / macOS 13 and later), {check.get('compute_precision', 'float32')}. "
             f"Inputs {', '.join(f'`{n}`' for n in names)} (int32, 1–{MAX_BATCH} texts, 1–{tokens} tokens); "
             f"output `{out}`{what}",
             "Tokenize with the tokenizer in this folder (swift-transformers reads `tokenizer.json`).", "",
             "```python", "import coremltools as ct", "from transformers import AutoTokenizer", "",
             f'tokenizer = AutoTokenizer.from_pretrained("{name}")', f'model = ct.models.MLModel("{name}/{FILE}")',
             'enc = tokenizer(["The weather is lovely today."], padding=True, truncation=True, return_tensors="np")',
             ", ".join(names) + " = " + ", ".join(f'enc["{n}"].astype("int32")' for n in names),
             f'{out} = model.predict({{{feeds}}})["{out}"]', "```", "",
             "### Check", ""]
    runs = check.get("runs", {})
    how = ("Run with Core ML (`MLModel.predict`) on macOS" if "predict" in runs else
           "Core ML runs on macOS only, so on the machine that built this the package was read back (inputs, "
           "outputs, flexible shapes, op list, the ops kept in fp32) and its program, with the weights from its "
           "weight file, was run op by op in numpy (fp16 ops in fp16)")
    lines.append(f"{how}, and compared with the MLX model on {check.get('rows', '?')} texts plus a long (truncated) "
                 f"and a non-ASCII one, batched with padding: max abs difference {check['max_abs_diff']:.2e}, "
                 f"min cosine {check['min_cosine']:.6f} (needs {check['tolerance']}).")
    return lines + [""]
