"""TrainingArgs: the one source of truth for training settings (CLI flags and GUI forms are built
from these fields and their help text)."""
from __future__ import annotations

import math
from dataclasses import Field, asdict, dataclass, field, fields

SCHEDULERS = ("linear", "cosine", "constant")
BATCH_SAMPLERS = ("default", "no_duplicates")
# logging_steps = 0 (auto): every LOG_EVERY steps; a run shorter than LOG_EVERY × 50 steps logs every
# total/100 steps (at least every step), so its curves still have points.
LOG_EVERY = 10


def arg(default, help: str, flag: str | None = None, cli: bool = True, parse=None, **kw):
    """A dataclass field with help text and, optionally, the CLI flag it is known by
    (``cli=False``: set through another flag, e.g. --push-to-hub REPO sets push_to_hub) and the
    function that reads its flag's text (``parse``; default: from the field's type)."""
    meta = {"help": help, "cli": cli}
    if flag:
        meta["flag"] = flag
    if parse:
        meta["parse"] = parse
    if callable(default) and not isinstance(default, (int, float, str, bool)):
        return field(default_factory=default, metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def flag(f: Field) -> str:
    """The CLI flag of a settings field: its own (``--lr``) or ``--field-name``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _number_list(value, kind, name: str) -> list | None:
    """A list of numbers from a list or a comma-separated string ("384,256"); None or empty -> None."""
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else value
    try:
        return [kind(x) for x in items]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be comma-separated numbers (e.g. 384,256,128), got {value!r}.") from None


AUTO = "auto"   # --batch-size auto: the largest batch that fits the memory budget (engine/training/batch_planner.py)


def batch_size_value(text: str) -> int | str:
    """--batch-size: a whole number or 'auto'."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a whole number or '{AUTO}', got {text!r}") from None


@dataclass
class TrainingArgs:
    output_dir: str = arg("", "Folder for the final model; checkpoints go to OUTPUT/checkpoints.", "--output")
    batch_size: int | str = arg(16, "Examples per optimizer micro-step (per process in distributed runs), or 'auto': "
                                    "the largest power of two whose training step fits the memory budget, measured "
                                    "with a few trial steps on the longest rows.", parse=batch_size_value)
    memory_budget: float | None = arg(None, "With --batch-size auto: the memory (GB) a training step may use "
                                            "(default: 60% of this machine's memory, less what the process "
                                            "already holds).")
    effective_batch: int | None = arg(None, "With --batch-size auto: the examples wanted per optimizer step; when "
                                            "fewer fit, gradient accumulation makes up the difference.")
    learning_rate: float = arg(5e-5, "Peak learning rate of AdamW.", "--lr")
    num_train_epochs: float = arg(1.0, "Passes over the training data (ignored when max_steps > 0).", "--epochs")
    max_steps: int = arg(-1, "Stop after this many optimizer steps (-1 = use epochs).")
    gradient_accumulation_steps: int = arg(1, "Micro-batches per optimizer step (effective batch = batch_size × this).",
                                           "--grad-accum")
    grad_checkpoint: bool = arg(False, "Recompute each layer's activations in the backward pass: less memory, ~30% slower.")
    lr_scheduler_type: str = arg("linear", "Learning-rate schedule after warmup: linear, cosine or constant.", "--scheduler")
    warmup_ratio: float = arg(0.0, "Fraction of the steps used for linear warmup.", "--warmup")
    warmup_steps: int = arg(0, "Warmup steps (wins over warmup_ratio when > 0).")
    weight_decay: float = arg(0.01, "AdamW decoupled weight decay.")
    max_grad_norm: float = arg(1.0, "Clip the global gradient norm to this (0 = no clipping).")
    freeze_embeddings: bool = arg(False, "Keep the token/position embedding weights fixed.")
    dropout: float | None = arg(None, "Dropout probability for every dropout of the model, in training only "
                                      "(default: the model config's own values; 0 = no dropout). Saved into "
                                      "the output's config.json.")
    lora_rank: int = arg(0, "Train LoRA adapters of this rank on the backbone's linear layers instead of every weight "
                            "(0 = full fine-tuning). The task head always trains; the output holds merged full weights.")
    lora_alpha: float = arg(16.0, "LoRA scaling numerator: the update is scaled by lora_alpha / lora_rank.")
    lora_dropout: float = arg(0.0, "Dropout on the input of the LoRA update, in training only.")
    lora_targets: str | None = arg(None, "Comma-separated names of the linear layers that get adapters (a dotted suffix "
                                         "of the module path, or a pattern with *); default: the family's attention "
                                         "and MLP layers.")
    dora: bool = arg(False, "DoRA: also train each output row's magnitude of the adapted layers (needs lora_rank > 0).")
    save_adapter: bool = arg(False, "Also write the adapter alone, in PEFT's format, to OUTPUT/adapter "
                                    "(needs lora_rank > 0).")
    quantize_base: int | None = arg(None, "QLoRA: keep the frozen base's linear layers quantized to 4 or 8 bits "
                                          "while the adapters train in float (needs lora_rank > 0). The output "
                                          "holds the dequantized base plus the adapters, merged.")
    train_new_tokens: bool = arg(True, "With adapters, also train the embedding rows of tokens added to the "
                                       "tokenizer (late interaction's [Q]/[D]); every other row stays frozen.")
    eval_steps: int = arg(0, "Evaluate every N steps (0 = before training and at the end only).")
    save_steps: int = arg(500, "Write a checkpoint every N steps (0 = only at the end).")
    save_total_limit: int = arg(2, "Keep at most this many checkpoints (the best one is always kept).")
    logging_steps: int = arg(0, "Report loss and speed every N steps (the only host syncs in the loop); 0 = auto: "
                                f"every {LOG_EVERY}, more often on short runs.")
    seed: int = arg(42, "Seed for initialisation, data order and masking.")
    max_length: int = arg(256, "Maximum tokens per text; longer texts are truncated.")
    prompts: dict[str, str] = arg(dict, "A named prompt of an embedding model, NAME=TEXT (repeatable): saved into "
                                        "config_sentence_transformers.json, where sentence-transformers applies it "
                                        "by name (encode(..., prompt_name=NAME)).", "--prompt")
    query_prompt: str | None = arg(None, "Text put before every query (the anchor column) of an embedding model, in "
                                         "training and after: its 'query' prompt.")
    document_prompt: str | None = arg(None, "Text put before every document (positives, negatives) of an embedding "
                                            "model, in training and after: its 'document' prompt.")
    use_late_interaction: bool = arg(False, "Train a ColBERT-style late-interaction model (MaxSim).",
                                     "--late-interaction")
    late_interaction_dim: int = arg(128, "Token-vector size of the late-interaction projection.")
    bidirectional: bool | None = arg(None, "Attention direction of families that have the switch (Gemma 3): "
                                           "bidirectional (needed for masked LM) or, with --no-bidirectional, "
                                           "causal; unset = the model's config.json. Saved into the output's "
                                           "config.json.")
    is_regression: bool | None = arg(None, "Classification with float targets (None = detect from the labels).",
                                     "--regression")
    loss: str | None = arg(None, "Loss name (default: chosen from task and data): mnrl, cached_mnrl, cosent, "
                                 "cosine, late_interaction, cached_late_interaction, cross_entropy, mse, "
                                 "token_cross_entropy.")
    mini_batch_size: int = arg(32, "Mini-batch size of the cached (GradCache) losses: cached_mnrl, "
                                   "cached_late_interaction.")
    matryoshka_dims: list[int] | None = arg(None, "Matryoshka: also train the first N dimensions of each embedding as "
                                                  "an embedding (e.g. 384,256,128,64); the loss is summed over these "
                                                  "truncations and evaluation reports metrics at each one.")
    matryoshka_weights: list[float] | None = arg(None, "Matryoshka: the weight of each dim's loss, in the order of "
                                                       "matryoshka_dims (default: 1 each).")
    class_weights: str | None = arg(None, "'auto' = inverse class frequency weights for imbalanced classification.")
    metric_for_best_model: str | None = arg(None, "Eval metric that picks the best checkpoint (e.g. eval_loss, accuracy).")
    greater_is_better: bool | None = arg(None, "Whether a larger metric_for_best_model is better (default: not for losses).")
    load_best_model_at_end: bool = arg(False, "End the run with the best checkpoint's weights.")
    early_stopping_patience: int = arg(0, "Stop after this many evaluations without improvement (0 = never).")
    max_bad_steps: int = arg(5, "Stop after this many consecutive steps with a non-finite loss or gradient.")
    pad_to_multiple_of: int = arg(8, "Pad batches to a multiple of this so the compiled step sees few shapes.")
    group_by_length: bool = arg(True, "Batch rows of similar length together: far less padding, faster steps. With "
                                      "in-batch negatives (MNRL) the negatives then share a length, which cost a "
                                      "model trained from scratch a little retrieval quality on mixed-length data.")
    batch_sampler: str = arg("default", "How rows are cut into batches: default, or no_duplicates: no batch holds the "
                                        "same text twice (as anchor, positive or negative), so in-batch-negative "
                                        "losses (MNRL, late interaction) never meet a copy of the answer as a "
                                        "negative on data with repeated texts. Works with group_by_length.")
    compile: bool = arg(True, "Compile the train step with mx.compile.")
    push_to_hub: bool = arg(False, "Upload the final model to the Hugging Face Hub.", cli=False)
    hub_model_id: str | None = arg(None, "Hub repository id (user/name) for push_to_hub.", "--push-to-hub")
    hub_private: bool = arg(False, "Create the Hub repository as private.")
    resume_from_checkpoint: str | None = arg(None, "A checkpoint folder, or 'latest' in OUTPUT/checkpoints.", "--resume")
    distributed: bool = arg(False, "Data-parallel training across the processes started by `raclate launch` or "
                                   "mlx.launch; batch_size is per process, rank 0 writes the outputs.")
    gather_across_ranks: bool = arg(True, "Distributed runs: in-batch contrastive losses (MNRL, late interaction) take "
                                          "their negatives from every process's batch (the global batch).")
    peer_timeout: float = arg(60.0, "Distributed runs: stop with an error after this many seconds without a heartbeat "
                                    "from another process (a process that dies is noticed at once).")

    def __post_init__(self):
        for f in fields(self):   # NaN slips through every comparison below and trains an all-NaN model
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{flag(f)} must be a finite number, got {value}.")
        if self.batch_sampler not in BATCH_SAMPLERS:
            raise ValueError(f"batch_sampler must be one of {', '.join(BATCH_SAMPLERS)}, got {self.batch_sampler!r}.")
        if self.lr_scheduler_type not in SCHEDULERS:
            raise ValueError(f"lr_scheduler_type must be one of {', '.join(SCHEDULERS)}, got {self.lr_scheduler_type!r}.")
        if isinstance(self.batch_size, str):   # a run.json may spell it "Auto" or "32"
            self.batch_size = batch_size_value(self.batch_size)
        self._check_auto_batch()
        for name in ("batch_size", "gradient_accumulation_steps", "pad_to_multiple_of", "max_length"):
            if getattr(self, name) != AUTO and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.logging_steps < 0:
            raise ValueError(f"logging_steps must be 0 (auto) or more, got {self.logging_steps}.")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be 0 (full fine-tuning) or more, got {self.lora_rank}.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        if self.quantize_base not in (None, 4, 8):
            raise ValueError(f"quantize_base must be 4 or 8 (bits), got {self.quantize_base}.")
        needs = next((n for n in ("dora", "save_adapter", "quantize_base") if getattr(self, n)), None)
        if needs and not self.lora_rank:
            raise ValueError(f"{needs} needs adapters: set lora_rank (--lora-rank).")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")
        if not isinstance(self.prompts, dict):
            raise ValueError(f"prompts must map prompt names to texts, got {self.prompts!r}.")
        if self.hub_model_id:
            self.push_to_hub = True
        # The CLI gives the lists as "384,256,128,64"; a run.json gives them as JSON lists.
        self.matryoshka_dims = _number_list(self.matryoshka_dims, int, "matryoshka_dims")
        self.matryoshka_weights = _number_list(self.matryoshka_weights, float, "matryoshka_weights")
        if self.matryoshka_dims and min(self.matryoshka_dims) < 1:
            raise ValueError(f"matryoshka_dims must be positive, got {self.matryoshka_dims}.")
        if self.matryoshka_weights and len(self.matryoshka_weights) != len(self.matryoshka_dims or ()):
            raise ValueError(f"matryoshka_weights needs one weight per matryoshka dim, got {self.matryoshka_weights} "
                             f"for {self.matryoshka_dims}.")

    def _check_auto_batch(self) -> None:
        auto = self.batch_size == AUTO
        if self.memory_budget is not None and (not auto or self.memory_budget <= 0):
            raise ValueError("--memory-budget is the limit of --batch-size auto: pass both, with a budget above 0 GB, "
                             f"got {self.memory_budget} with batch size {self.batch_size}.")
        if self.effective_batch is not None:
            if not auto or self.effective_batch < 1:
                raise ValueError("--effective-batch goes with --batch-size auto and must be at least 1; with a fixed "
                                 "batch size set --grad-accum instead.")
            if self.gradient_accumulation_steps != 1:
                raise ValueError("--effective-batch sets the gradient accumulation itself: leave --grad-accum at 1.")
        if auto and self.distributed:
            raise ValueError("--batch-size auto measures one process: with --distributed pick the batch with a "
                             "single-process run (--batch-size auto --max-steps 1), then pass that number.")

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps of the run: max_steps, else the epochs' worth."""
        return self.max_steps if self.max_steps > 0 else max(1, math.ceil(self.num_train_epochs * steps_per_epoch))

    def logging_interval(self, total_steps: int) -> int:
        """Steps between two step events: logging_steps, or (0) the automatic interval for this run."""
        if self.logging_steps:
            return self.logging_steps
        return LOG_EVERY if total_steps >= LOG_EVERY * 50 else max(1, total_steps // 100)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingArgs":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown training settings: {', '.join(unknown)}.")
        return cls(**values)
