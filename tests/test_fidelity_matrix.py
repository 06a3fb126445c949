"""The fidelity matrix: every family (each attention direction it has a switch for) × every task of the
task table (engine/tasks.py) × the output format that task claims. A cell the family spec says loads in
its library trains 2 steps from a tiny random checkpoint with `raclate train`, then the output is
reloaded in that library (sentence-transformers, PyLate, CrossEncoder, transformers' auto class) and
compared with the engine's load_model on single texts, pairs, prompts, a truncated long text, non-ASCII
text and batches of very different lengths, padded on both sides. Equal: cos ≥ 0.9999 or max |Δ| ≤ 1e-4.
Any other cell must be refused before training: exit 2, no output folder, a message naming what works.

The cells come from the tables (family_specs(), TASKS): a new family or task shows up here by itself
(a new task fails `test_every_task_has_cells` until it gets its data and comparison). `-s` prints the
matrix; the README's architecture table is checked against the same expectations."""
import json

import numpy as np
import pytest

import mlx.core as mx
from engine.cli import main
from engine.data.inputs import tokenize_texts
from engine.defaults import RESOURCES_DIR
from engine.inference import classify, encode, load_for_task
from engine.models import family_specs, load_model
from engine.tasks import TASKS, TRAINING_TASKS
from tests.test_export import BASE_CLASSES, tiny_checkpoint

pytestmark = [pytest.mark.parity, pytest.mark.slow]

COSINE_MIN, ATOL, MAX_LENGTH = 0.9999, 1e-4, 32
LONG = "The quick brown fox jumps over the lazy dog again and again, " * 8   # past MAX_LENGTH: truncated
TEXTS = ["What is the capital of France?", "ok", "Ça coûte 5 €, naïve café — 東京は日本の首都です。", LONG,
         "Fine-tuning adapts a pretrained model to one task; it's quick (and cheap)!"]
PAIRS = list(zip(TEXTS, TEXTS[::-1]))
LABELS = ["negative", "neutral", "positive"]
TAGS = ["O", "B-LOC", "I-LOC"]
PROBLEMS = {"classification": "single_label_classification", "pair classification": "single_label_classification",
            "regression": "regression", "multi-label": "multi_label_classification"}
PROMPTS = ["--query-prompt", "query: ", "--document-prompt", "passage: "]

# task → its cells: (name, data kind, extra `raclate train` flags). The format is the task's own output
# (engine/tasks.py), PyLate for late interaction.
CELLS = {
    "sentence-similarity": [("embedding", "pairs", PROMPTS),
                            ("late interaction", "pairs", ["--late-interaction", "--late-interaction-dim", "16"])],
    "feature-extraction": [("bare encoder", "pairs", [])],
    "text-classification": [("classification", "labels", []), ("pair classification", "pair_labels", []),
                            ("regression", "scores", ["--regression"]), ("multi-label", "multi", ["--multi-label"])],
    "token-classification": [("token classification", "tags", [])],
    "masked-lm": [("masked LM", "text", [])],
}


def variants():
    """(row name, spec, bidirectional flag or None): one row per family, two where it has the switch."""
    for spec in family_specs().values():
        yield spec.model_type, spec, None
        if spec.supports_bidirectional:
            yield f"{spec.model_type} bidirectional", spec, True


def cell_format(task: str, name: str) -> str:
    return "pylate" if name == "late interaction" else TASKS[task].output


def loads(spec, task: str, bidirectional) -> bool:
    """What the spec claims: the task's output loads in its library. Masked LM needs bidirectional
    attention, so a family with the switch claims it only with the switch on."""
    if task not in spec.exportable_tasks:
        return False
    return not (task == "masked-lm" and spec.supports_bidirectional and not bidirectional)


ALL_CELLS = [(row, spec, bidi, task, name, kind, flags) for row, spec, bidi in variants()
             for task in TASKS for name, kind, flags in CELLS.get(task, [])]
MATRIX: dict[tuple[str, str], str] = {}


def test_every_task_has_cells():
    assert set(CELLS) == set(TASKS), "give each task of engine/tasks.py its cells here"


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def print_matrix():
    yield
    if not MATRIX:
        return
    columns = [f"{name} [{cell_format(task, name)}]" for task in TASKS for name, _, _ in CELLS.get(task, [])]
    rows = list(dict.fromkeys(row for row, _ in MATRIX))
    lines = ["| family | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(MATRIX.get((row, c.split(" [")[0]), "") for c in columns) + " |")
    print("\n\nFidelity matrix (max |Δ| / min cos against the target library):\n" + "\n".join(lines))


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """model_type → a tiny random checkpoint (hidden 32) with the embedded tokenizer, built once."""
    built = {}

    def get(spec):
        if spec.model_type not in built:
            key = next(k for k in (spec.model_type, *spec.aliases) if k in BASE_CLASSES)
            built[spec.model_type] = tiny_checkpoint(key, tmp_path_factory.mktemp(spec.model_type))
        return built[spec.model_type]
    return get


def _rows(kind: str) -> list[dict]:
    texts = TEXTS * 4
    if kind == "pairs":
        return [{"text": a, "text_pair": b} for a, b in zip(texts, texts[1:] + texts[:1])]
    if kind == "labels":
        return [{"text": t, "label": LABELS[i % 3]} for i, t in enumerate(texts)]
    if kind == "pair_labels":
        return [{"text": a, "text_pair": b, "label": LABELS[i % 3]} for i, (a, b) in enumerate(PAIRS * 4)]
    if kind == "scores":
        return [{"text": t, "label": i / len(texts)} for i, t in enumerate(texts)]
    if kind == "multi":
        return [{"text": t, "label": [LABELS[i % 3], LABELS[(i + 1) % 3]][: 1 + i % 2]} for i, t in enumerate(texts)]
    if kind == "tags":
        return [{"tokens": t.split()[:12], "labels": [TAGS[j % 3] for j in range(len(t.split()[:12]))]}
                for t in texts]
    return [{"text": t} for t in texts]


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")

    def get(kind):
        path = folder / f"{kind}.jsonl"
        if not path.exists():
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _rows(kind)), encoding="utf-8")
        return str(path)
    return get


# -- comparisons ------------------------------------------------------------------------------------
def _agreement(pairs) -> tuple[float, float]:
    """[(ours, theirs)] of equal-shaped arrays (rows of vectors) → (max |Δ|, min cosine over rows)."""
    diff, cos = 0.0, 1.0
    for a, b in pairs:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert a.shape == b.shape, (a.shape, b.shape)
        width = a.shape[-1] if a.ndim > 1 and a.shape[-1] > 1 else a.size   # one score per row: one vector
        a, b = a.reshape(-1, width), b.reshape(-1, width)
        diff = max(diff, float(np.abs(a - b).max()))
        norms = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
        cos = min(cos, float(((a * b).sum(-1) / norms).min()))
    return diff, cos


def _sentence_transformers(out):
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(out), device="cpu")
    model, tok = load_model(str(out), "sentence-similarity")
    assert st.prompts.get("query") == "query: " and st.max_seq_length == MAX_LENGTH
    calls = [({}, "encode", {}), ({"prompt_name": "query"}, "encode", {"prompt_name": "query"}),
             ({"is_query": True}, "encode_query", {}), ({"is_query": False}, "encode_document", {})]
    return [(encode(model, tok, TEXTS, batch_size=8, **ours), getattr(st, method)(TEXTS, batch_size=8, **theirs))
            for ours, method, theirs in calls]


def _pylate(out):
    from pylate import models
    colbert = models.ColBERT(str(out), device="cpu")
    model, tok = load_model(str(out))
    assert model.info.late_interaction
    return [pair for is_query in (True, False)
            for pair in zip(encode(model, tok, TEXTS, is_query=is_query), colbert.encode(TEXTS, is_query=is_query))]


def _batches(tok, pairs: bool):
    """The same texts (pairs) tokenized as the engine does, padded on the tokenizer's side and the other."""
    native = tok.padding_side
    args = ([a for a, _ in PAIRS], [b for _, b in PAIRS]) if pairs else (TEXTS,)
    for side in (native, "left" if native == "right" else "right"):
        tok.padding_side = side
        try:
            enc = tokenize_texts(tok, *args, max_length=MAX_LENGTH, padding=True, return_tensors="np")
        finally:
            tok.padding_side = native
        yield {k: v.astype(np.int32) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _transformers(out, spec, task, name):
    import torch
    import transformers
    embedding = TASKS[task].embedding
    ref = getattr(transformers, spec.auto_class(task)).from_pretrained(str(out), dtype=torch.float32).eval()
    model, tok = load_model(str(out), task)
    if task == "text-classification":   # transformers reads the same problem (its loss, pipeline's function)
        assert ref.config.problem_type == model.info.config["problem_type"] == PROBLEMS[name]
    keys = ("input_ids", "attention_mask") + (("token_type_ids",) if getattr(model, "token_types", False) else ())
    compared = []
    for arrays in _batches(tok, pairs=name == "pair classification"):
        arrays = {k: arrays[k] for k in keys}   # the engine's argument order
        fn = model.hidden_states if embedding else model
        ours = np.array(fn(*(mx.array(v) for v in arrays.values())).astype(mx.float32))
        with torch.no_grad():
            res = ref(**{k: torch.tensor(v, dtype=torch.long) for k, v in arrays.items()})
        theirs = (res.last_hidden_state if embedding else res.logits).float().numpy()
        sel = arrays["attention_mask"] > 0 if ours.ndim == 3 else slice(None)   # token outputs: real tokens
        compared.append((ours[sel], theirs[sel]))
    if name == "pair classification":   # and as sentence-transformers' CrossEncoder scores pairs
        from sentence_transformers import CrossEncoder
        cross = CrossEncoder(str(out), device="cpu", max_length=MAX_LENGTH)
        arrays = next(_batches(tok, pairs=True))
        ours = np.array(model(*(mx.array(arrays[k]) for k in keys)).astype(mx.float32))
        compared.append((ours, cross.predict(PAIRS, activation_fn=torch.nn.Identity(), convert_to_numpy=True)))
        # `raclate predict`'s path (the run's recorded inputs, classify) gives CrossEncoder's probabilities
        served, served_tok, _, _ = load_for_task(str(out))
        scores = [{item["label"]: item["score"] for item in r["labels"]} for r in classify(served, served_tok, PAIRS)]
        compared.append((np.array([[s[n] for n in LABELS] for s in scores]), cross.predict(PAIRS, apply_softmax=True)))
    return compared


# -- the matrix -------------------------------------------------------------------------------------
@pytest.mark.parametrize("row,spec,bidirectional,task,name,kind,flags", ALL_CELLS,
                         ids=[f"{c[0]}-{c[4]}".replace(" ", "_") for c in ALL_CELLS])
def test_cell(row, spec, bidirectional, task, name, kind, flags, bases, data_files, tmp_path, capsys):
    fmt = cell_format(task, name)
    out = tmp_path / "out"
    argv = ["train", "--model", str(bases(spec)), "--task", task, "--data", data_files(kind), "--output", str(out),
            "--max-steps", "2", "--batch-size", "4", "--max-length", str(MAX_LENGTH), "--lr", "1e-3", *flags]
    code = main(argv + (["--bidirectional"] if bidirectional else []))
    err = capsys.readouterr().err
    if not loads(spec, task, bidirectional):
        MATRIX[row, name] = "refused" if code == 2 else f"exit {code}"
        print(f"\n{row} × {name}: " + next((line for line in err.splitlines() if line.startswith("error")), err))
        assert code == 2 and not out.exists(), err
        working = [s for s in family_specs().values() if loads(s, task, True)]
        names = [w for s in working for w in (s.model_type, s.name)] + ["--bidirectional"]
        assert any(w.lower() in err.lower() for w in names), err
        return
    if code != 0:
        MATRIX[row, name] = f"exit {code}"
    assert code == 0, err
    record = json.loads((out / "raclate_run.json").read_text())
    assert record["export"]["ok"], record["export"]   # the run's own self-check
    compared = {"sentence-transformers": _sentence_transformers, "pylate": _pylate}.get(fmt)
    compared = compared(out) if compared else _transformers(out, spec, task, name)
    diff, cos = _agreement(compared)
    wrote = record["export"]["format"]   # a feature-extraction run writes a sentence-transformers folder
    MATRIX[row, name] = f"{diff:.1e} / {cos:.6f}" + (f" (run wrote {wrote})" if wrote != fmt else "")
    assert cos >= COSINE_MIN or diff <= ATOL, (row, name, fmt, diff, cos)


def test_t5gemma_bare_encoder_export_checks_with_the_text_encoding_class(tmp_path):
    """AutoModel maps t5gemma to the encoder-decoder T5GemmaModel, which refuses an encoder folder: the
    transformers export's self-check (and its card) use the spec's AutoModelForTextEncoding."""
    from engine.outputs.export import self_check, write_folder
    model, tok = load_model(str(tiny_checkpoint("t5gemma", tmp_path / "base")), "feature-extraction")
    write_folder(model, tok, tmp_path / "out", "transformers")
    report = self_check(model, tok, tmp_path / "out", "transformers", TEXTS)
    assert report["ok"] and "AutoModelForTextEncoding" in report["reference"], report


# -- the README says the same -----------------------------------------------------------------------
README_COLUMNS = {"embedding": "sentence-similarity", "late interaction": "sentence-similarity",
                  "classification": "text-classification", "token classification": "token-classification",
                  "masked LM": "masked-lm"}


def test_readme_architecture_table_matches_the_matrix():
    """A README cell starting with "—" is a refused cell; anything else (✓, a pooling, a condition) trains.
    A family with the bidirectional switch trains the task if either direction does."""
    readme = (RESOURCES_DIR.parent / "README.md").read_text(encoding="utf-8").splitlines()
    header = next(line for line in readme if line.startswith("| model_type | examples |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert set(README_COLUMNS) == set(columns[2:]) and set(README_COLUMNS.values()) == set(TRAINING_TASKS)
    for spec in family_specs().values():
        row = next(line for line in readme if line.startswith(f"| `{spec.model_type}`"))
        cells = dict(zip(columns, (c.strip() for c in row.strip("|").split("|"))))
        for column, task in README_COLUMNS.items():
            trains = any(loads(spec, task, bidi) for bidi in (None, True))
            assert (not cells[column].startswith("—")) == trains, (spec.model_type, column, cells[column])
            conditional = trains and not loads(spec, task, None)
            assert ("--bidirectional" in cells[column]) == conditional, (spec.model_type, column, cells[column])
