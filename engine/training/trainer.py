"""The training loop: tokenize, batch, step (the compiled step itself is in engine/training/step.py),
log, evaluate, keep the best model, checkpoint with exact resume, and report it all as events."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import engine  # noqa: F401  (fast BLAS before mlx.core)
import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from engine.models.adapters import apply_training_adapters
from engine.training.checkpoint import load_checkpoint, pick_checkpoint, rotate_checkpoints, save_checkpoint
from engine.data import LengthGroupedBatchSampler, normalize_task, tokenize_dataset
from engine.data.collators import collator_for
from engine.data.sampler import row_texts
from engine.data.inputs import adopt, role_prompts, user_prompts
from engine.data.mixing import MixedBatchSampler, dataset_seed
from engine.data.prefetch import Prefetcher
from engine.training.distributed import World, fingerprint, init_world
from engine.errors import TrainingError, UsageError
from engine.events import make_event
from engine.inference import collated_batches
from engine.losses import auto_class_weights, select_loss
from engine.models.dropout import dropout_values
from engine.training.schedules import warmup_steps_for
from engine.training.step import accumulate, build_step, make_optimizer
from engine.training import batch_planner
from engine.training.args import AUTO, TrainingArgs
from engine.tasks import CACHED_LOSSES


def by_name(datasets) -> dict:
    """{name: dataset} of several datasets; one dataset is {"": it}; none is {}."""
    return dict(datasets) if isinstance(datasets, dict) else {} if datasets is None else {"": datasets}


def freeze_embeddings(model) -> None:
    """Freeze the input embeddings: the backbone weights the family's spec names (``embedding_weights``,
    e.g. T5Gemma's ``encoder.embed_tokens.``; not LFM2's ``embedding_norm``, its final norm)."""
    prefixes = model.info.family.SPEC.embedding_weights
    modules = dict(model.backbone.named_modules())
    for name, _ in tree_flatten(model.backbone.parameters()):
        if name.startswith(prefixes):
            path, _, weight = name.rpartition(".")
            modules[path].freeze(recurse=False, keys=[weight])


class Trainer:
    def __init__(self, model, tokenizer, task_type: str, training_args: TrainingArgs, train_dataset,
                 eval_dataset=None, callbacks=(), label_info=None, run_info: dict | None = None, world: World | None = None,
                 losses: dict | None = None, sampling: str = "proportional"):
        """Several datasets: ``train_dataset`` and ``eval_dataset`` are {name: dataset}, ``losses`` {name:
        loss name or None} (default: the args' loss) and ``sampling`` orders their batches (engine/data/mixing.py)."""
        self.model, self.tokenizer, self.args = model, tokenizer, training_args
        self.task = normalize_task(task_type)
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.losses, self.sampling = dict(losses or {}), sampling
        self.callbacks = list(callbacks)
        self.label_info = label_info
        self.run_info = dict(run_info or {})
        # The run's inputs ride on the model: saving writes them, inference applies them (engine/data/inputs.py).
        adopt(model.info, prompts=user_prompts(training_args.prompts, training_args.query_prompt,
                                               training_args.document_prompt),
              use_chat_template=self.run_info.get("use_chat_template", False), max_length=training_args.max_length)
        self.stop_requested = False
        self.history: list[dict] = []
        self.output_dir = Path(training_args.output_dir) if training_args.output_dir else None
        # Data parallel (engine/training/distributed.py): this process's rank; rank 0 alone writes files and events.
        self.world = world or (init_world(training_args.peer_timeout) if training_args.distributed else World())
        if not self.world.is_main:
            self.output_dir = None
        self._best_weights: dict = {}
        self._saved_step = None
        self._data_state = None  # the sampler position of the last batch trained on (the prefetcher runs ahead)

    # -- events -------------------------------------------------------------------------------
    def emit(self, event_name: str, /, **fields) -> None:
        event = make_event(event_name, **fields)
        if event_name in ("step", "eval"):
            self.history.append(event)
        for callback in self.callbacks if self.world.is_main else ():
            callback(event)

    def request_stop(self) -> None:
        """Finish the current step, write a checkpoint and return (SIGINT in the CLI calls this)."""
        self.stop_requested = True

    # -- data ---------------------------------------------------------------------------------
    def _prompts(self) -> dict:
        """The model's sentence-transformers prompts as role prompts: the query prompt for the anchor,
        the document prompt (named document, passage or corpus) for positives and negatives."""
        return role_prompts(self.model.info, self.task)

    def _tokenized(self, dataset):
        return tokenize_dataset(dataset, self.tokenizer, self.task, self.args.max_length,
                                use_chat_template=self.model.info.use_chat_template, prompts=self._prompts())

    @staticmethod
    def _lengths(ds) -> np.ndarray:
        cols = [c for c in ds.column_names if c.endswith("input_ids")]
        per_col = [np.fromiter((len(x) for x in ds[c]), dtype=np.int64, count=len(ds)) for c in cols]
        return np.max(np.stack(per_col), axis=0)

    def _collator(self, ds):
        kw = {"pad_to_multiple_of": self.args.pad_to_multiple_of}
        if self.task == "sentence-similarity" and self.model.info.colbert:  # PyLate's query/document format
            from engine.models.pylate import ColBERTCollator
            return ColBERTCollator(self.tokenizer, self.model.info.colbert, max_length=self.args.max_length, **kw)
        if self.task == "text-classification":
            kw["is_regression"] = bool(self.label_info and self.label_info.is_regression)
        if self.task == "masked-lm":  # each rank masks its own rows with its own draws
            kw["seed"] = self.args.seed + 1_000_003 * self.world.rank
        return collator_for(self.task, self.tokenizer, **kw)

    @staticmethod
    def _rows(ds, indices) -> list[dict]:
        cols = ds[list(map(int, indices))]
        return [{k: v[i] for k, v in cols.items()} for i in range(len(indices))]

    # -- loss ---------------------------------------------------------------------------------
    def _loss(self, ds, gather: bool = False, name: str = ""):
        """The loss of dataset ``name``'s rows (``ds``): its own loss name, else the args'."""
        a = self.args
        loss_name = self.losses.get(name) or a.loss
        negatives = sum(1 for c in ds.column_names if c.startswith("negative") and c.endswith("_input_ids"))
        scored = self.task == "sentence-similarity" and "label" in ds.column_names
        weights = None
        multi_label = bool(self.label_info and self.label_info.is_multi_label)
        if a.class_weights == "auto" and self.task == "text-classification":
            # multi-label: select_loss refuses class weights for BCE with a message
            weights = a.class_weights if multi_label else auto_class_weights(np.array(ds["label"]),
                                                                              self.label_info.num_labels)
        options = {"mini_batch_size": a.mini_batch_size} if loss_name in CACHED_LOSSES else {}
        try:
            loss = select_loss(self.task, scored=scored, use_late_interaction=a.use_late_interaction,
                               num_negatives=negatives,
                               is_regression=bool(self.label_info and self.label_info.is_regression),
                               is_multi_label=multi_label, class_weights=weights, loss_name=loss_name,
                               matryoshka_dims=a.matryoshka_dims, matryoshka_weights=a.matryoshka_weights, **options)
        except UsageError as exc:
            if not name:
                raise
            raise UsageError(f"Dataset {name!r}: {exc}. Give it its own 'loss' in the run.json data list.") from None
        if gather and hasattr(loss, "gather_across_ranks"):  # in-batch negatives from the global batch
            loss.gather_across_ranks = True
        return loss

    # -- training -----------------------------------------------------------------------------
    def train(self) -> dict:
        a, model, world = self.args, self.model, self.world
        if a.dropout is not None and set(dropout_values(model).values()) - {a.dropout}:
            raise TrainingError("bad_model", f"dropout is set to {a.dropout:g}, but the model was loaded with "
                                             f"{dropout_values(model)}.",
                                "Load the model with load_model(..., dropout=...), as train_run does.")
        mx.random.seed(a.seed)
        engine.backend.keep_freed_memory()  # no page faults for each step's fresh arrays (Linux)
        self.emit("phase", name="tokenizing")
        # One dataset is {"": it}; several are {name: dataset}, and every batch comes from one of them.
        train_sets = {n: self._tokenized(d) for n, d in by_name(self.train_dataset).items()}
        evals = {n: d for n, d in by_name(self.eval_dataset).items() if d is not None and len(d) > 0}
        evaluating = bool(evals)  # rank 0 evaluates, alone
        eval_sets = {n: self._tokenized(d) for n, d in evals.items()} if evaluating and world.is_main else {}
        empty = [n for n, d in train_sets.items() if len(d) == 0]
        if empty:
            raise TrainingError("bad_data", f"The training data{f' {empty[0]!r}' if empty[0] else ''} has no rows.",
                                "Check the file and the column mapping.")

        lengths = {n: self._lengths(d) for n, d in train_sets.items()}
        collators = {n: self._collator(d) for n, d in train_sets.items()}
        if a.freeze_embeddings:
            freeze_embeddings(model)
        apply_training_adapters(model, a.to_dict())  # lora_rank > 0: only adapters and the head train
        model.set_grad_checkpoint(a.grad_checkpoint)
        model.train()  # dropout on for the steps; evaluation switches to eval mode and back
        gather = world.size > 1 and a.gather_across_ranks
        loss_fns = {n: self._loss(d, gather=gather, name=n) for n, d in train_sets.items()}
        # evaluation is rank 0's alone: no gathering; a dataset's validation rows take its training loss
        eval_loss_fns = {n: self._loss(d, name=n) if gather else loss_fns[n] for n, d in train_sets.items()}
        if a.batch_size == AUTO:  # measured with trial steps on each dataset's longest rows (batch_planner.py)
            resumed = a.resume_from_checkpoint and pick_checkpoint(self.output_dir, a.resume_from_checkpoint)[0]
            trials = {n: (loss_fns[n], lengths[n],
                          lambda rows, n=n: self._collate(collators[n], train_sets[n], rows, 0)) for n in train_sets}
            a = self.args = batch_planner.resolve(model, a, trials, self.emit, resumed)
            mx.random.seed(a.seed)  # the trial steps drew dropout masks: the run draws as it would have

        # Every rank cuts the same global batches (batch_size × ranks) and reads its own contiguous slice.
        sampler = MixedBatchSampler([
            LengthGroupedBatchSampler(lengths[n], a.batch_size, seed=dataset_seed(a.seed, i), num_replicas=world.size,
                                      rank=world.rank, group_size=None if a.group_by_length else a.batch_size * world.size,
                                      texts=row_texts(train_sets[n]) if a.batch_sampler == "no_duplicates" else None)
            for i, n in enumerate(train_sets)], seed=a.seed, sampling=self.sampling)
        k = a.gradient_accumulation_steps
        steps_per_epoch = max(1, len(sampler) // k)
        total = a.total_steps(steps_per_epoch)
        log_every = a.logging_interval(total)
        warmup = warmup_steps_for(total, a.warmup_steps, a.warmup_ratio)
        optimizer = make_optimizer(a, total, warmup)
        optimizer.init(model.trainable_parameters())

        step, best = 0, {"metric": None, "step": None, "checkpoint": None, "bad_evals": 0, "metrics": {}}
        resumed_from, saved = None, None
        if a.resume_from_checkpoint and world.is_main:
            path, passed_over = pick_checkpoint(self.output_dir, a.resume_from_checkpoint)
            for message in passed_over:   # a damaged newer checkpoint (a write cut short): say which, resume before it
                self.emit("warning", message=message)
            saved = load_checkpoint(path, model, optimizer)
        if world.size > 1:  # the same data everywhere, then rank 0's weights, optimizer, RNG and position
            world.check_same({"training rows": sum(map(len, train_sets.values())),
                              "token lengths of the rows": fingerprint(np.concatenate(list(lengths.values()))),
                              "parameters": sum(v.size for _, v in tree_flatten(model.parameters())),
                              "total steps": total})
            saved = world.share_start(model, optimizer, saved)
        if saved is not None:
            step, best = saved["step"], {**best, **saved["best"]}
            sampler.load_state_dict(saved["sampler"])
            if sampler.consumed >= len(sampler):  # saved right at the end of an epoch
                sampler.set_epoch(sampler.epoch + 1)
            self.history = saved.get("history", [])
            resumed_from = step
        # one compiled step per dataset: each has its own loss (collated shapes differ too)
        steps = {n: build_step(model, fn, optimizer, a.max_grad_norm, a.compile,
                               group=world.group if world.size > 1 else None) for n, fn in loss_fns.items()}

        n_total = sum(v.size for _, v in tree_flatten(model.parameters()))
        n_train = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
        self.emit("run_started", run_id=self.run_info.get("run_id", ""), config=self._config(),
                  total_steps=total, num_examples=sum(map(len, train_sets.values())), trainable_parameters=n_train,
                  frozen_parameters=n_total - n_train, total_parameters=n_total, resumed_from_step=resumed_from,
                  world_size=world.size)
        if eval_sets and resumed_from is None:
            self._evaluate(eval_sets, eval_loss_fns, 0, best)

        # The first step traces and compiles; MLX builds the CPU kernels it needs once per machine (cached after).
        self.emit("phase", name="compiling")
        compiling = True
        window = {"t": time.perf_counter(), "steps": 0, "examples": 0, "tokens": 0, "losses": []}
        stopped_early, bad_streak, last_eval, stopping = False, 0, None, False
        align = gather and a.use_late_interaction
        self._data_state = sampler.state_dict()
        # Collation runs a batch or two ahead in a thread (in order); aligning across ranks is collective.
        names = list(train_sets)
        batches = Prefetcher(self._batches(sampler, [train_sets[n] for n in names], [collators[n] for n in names],
                                           align=align), depth=0 if align else 2)
        while step < total:
            if world.any(self.stop_requested):  # a Stop that reached any rank stops all before the same step
                stopping = True
                if window["steps"]:
                    self._log(step, total, optimizer, window, norm, steps_per_epoch)
                break
            micro = [next(batches) for _ in range(k)]
            if k == 1:
                loss, norm, ok = steps[names[micro[0][4]]][0](micro[0][0])
            else:   # each micro-batch through its dataset's gradients; any step's apply (they share model and optimizer)
                loss, norm, ok = accumulate(lambda m: steps[names[m[4]]][1](m[0]), steps[names[0]][2], micro)
            step += 1
            # The sync point of a step is in apply_fn (is the loss finite?); the update it queued runs while
            # the next batch is fetched and traced.
            mx.async_eval(model.state, optimizer.state, mx.random.state)
            self._data_state = micro[-1][3]  # what a checkpoint after this step resumes from
            if compiling:  # the first step has run (its apply synced): from here on, steady steps
                compiling = False
                self.emit("phase", name="training")
            window["steps"] += 1
            window["examples"] += sum(m[1] for m in micro)
            window["tokens"] += sum(m[2] for m in micro)
            if ok.item():
                bad_streak = 0
                window["losses"].append(loss)
            else:
                bad_streak += 1
                self._skipped(step, loss, bad_streak)

            if step % log_every == 0 or step == total:
                self._log(step, total, optimizer, window, norm, steps_per_epoch)
            if evaluating and a.eval_steps > 0 and step % a.eval_steps == 0 and step < total:
                last_eval = step
                stop = world.is_main and self._evaluate(eval_sets, eval_loss_fns, step, best, optimizer, sampler)
                if world.from_main(stop):  # rank 0's early-stopping decision, on every rank
                    stopped_early = True
                    break
            if a.save_steps > 0 and step % a.save_steps == 0 and step < total and self._saved_step != step:
                self._save_checkpoint(step, optimizer, sampler, best)
        batches.close()
        stopped_early = stopped_early or stopping

        metrics = {}
        if eval_sets and not stopping:
            if last_eval != step:
                self._evaluate(eval_sets, eval_loss_fns, step, best, optimizer, sampler)
            metrics = next(e["metrics"] for e in reversed(self.history) if e["event"] == "eval")
        if self._saved_step != step:
            self._save_checkpoint(step, optimizer, sampler, best)
        if a.load_best_model_at_end and best["step"] is not None and best["step"] != step:
            self._load_best(best, optimizer)
            metrics = best["metrics"]
        model.eval()
        return {"step": step, "metrics": dict(metrics), "stopped_early": stopped_early,
                "best_step": best["step"], "best_metric": best["metric"]}

    def _skipped(self, step, loss, bad_streak) -> None:
        """A step whose loss or gradient norm was not finite left the weights alone; several in a row stop."""
        self.emit("warning", message=f"Step {step} had a non-finite loss ({float(loss.item())}) or gradient; "
                                     "its update was skipped.")
        if bad_streak >= self.args.max_bad_steps:
            raise TrainingError("diverged", f"{bad_streak} steps in a row had a non-finite loss or gradient "
                                            f"(last at step {step}); training stopped.",
                                f"The learning rate ({self.args.learning_rate:g}) is probably too high: lower it "
                                "(--lr), use warmup (--warmup 0.1) and keep max_grad_norm at 1.0. Also check the "
                                "labels for NaN or huge values. Completed checkpoints are kept.")

    def _load_best(self, best, optimizer) -> None:
        if best["checkpoint"]:
            path = Path(best["checkpoint"])
            if self.output_dir is not None:  # by name: the run's folder may have moved (a replacement swapped in)
                path = self.output_dir / "checkpoints" / path.name
            load_checkpoint(path, self.model, optimizer)
        else:  # no output folder: the best weights were kept in memory
            self.model.update(tree_unflatten(list(self._best_weights.items())))
        self.emit("warning", message=f"Loaded the best model, from step {best['step']} "
                                     f"({self.args.metric_for_best_model or 'eval_loss'} = {best['metric']:.4g}).")

    def _collate(self, collator, ds, indices, position):
        rows = self._rows(ds, indices)
        # Masked LM draws its mask from (seed, epoch, position): the same mask again after a resume.
        return collator(rows, position=position) if self.task == "masked-lm" else collator(rows)

    def _batches(self, sampler, sets, collators, align: bool = False):
        """Endless (collated batch, examples, real tokens, sampler state after it, dataset) in sampler order
        across epochs; dataset is the position in ``sets`` / ``collators`` of the batch's own. ``align``: pad
        each column to its longest across the ranks (gathered late-interaction documents need it). Runs in the
        prefetch thread unless aligning: no MLX computation here."""
        pad_id, left = self.tokenizer.pad_token_id or 0, getattr(self.tokenizer, "padding_side", "right") == "left"
        while True:
            for collator in collators:
                if hasattr(collator, "set_epoch"):
                    collator.set_epoch(sampler.epoch)
            for d, indices in sampler:
                batch = self._collate(collators[d], sets[d], indices, sampler.consumed - 1)
                if align:
                    batch = self.world.align_lengths(batch, pad_id, left)
                masks = [x["attention_mask"] for x in batch["inputs"]] if "inputs" in batch else [batch["attention_mask"]]
                yield batch, len(indices), sum(int(np.asarray(m).sum()) for m in masks), sampler.state_dict(), d
            sampler.set_epoch(sampler.epoch + 1)

    def _log(self, step, total, optimizer, window, norm, steps_per_epoch) -> None:
        losses = [float(x.item()) for x in window["losses"]]
        elapsed = max(time.perf_counter() - window["t"], 1e-9)
        window["examples"], window["tokens"] = self.world.sum_ints(window["examples"], window["tokens"])  # all ranks
        self.emit("step", step=step, epoch=step / steps_per_epoch, loss=float(np.mean(losses)) if losses else None,
                  learning_rate=float(optimizer.learning_rate.item()), grad_norm=float(norm.item()),
                  examples_per_s=window["examples"] / elapsed, tokens_per_s=window["tokens"] / elapsed,
                  eta_s=(total - step) * elapsed / window["steps"], peak_memory_bytes=int(mx.get_peak_memory()))
        window.update(t=time.perf_counter(), steps=0, examples=0, tokens=0, losses=[])

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None) -> dict:
        """Loss and task metrics on ``eval_dataset`` (default: the trainer's); usable without train()."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None or len(dataset) == 0:
            raise ValueError("evaluate() needs data: pass eval_dataset here or to Trainer(...).")
        ds = self._tokenized(dataset)
        return self._metrics(ds, self._loss(ds))

    def _metrics(self, ds, loss_fn) -> dict:
        from engine.metrics import evaluate_batches
        training = self.model.training
        self.model.eval()
        collator = self._collator(ds)
        if hasattr(collator, "set_epoch"):  # the same masks at every evaluation, unlike training's
            collator.seed = self.args.seed + 1
        total, count, batches = 0.0, 0, []
        for rows, batch in collated_batches(ds, collator, self.task, self.args.batch_size):  # as `raclate eval`
            total += float(loss_fn(self.model, batch).item()) * rows
            count += rows
            batches.append(batch)
        metrics = {"eval_loss": total / max(count, 1)}
        metrics.update(evaluate_batches(self.task, self.model, batches, self.label_info,
                                        matryoshka_dims=self.args.matryoshka_dims))
        self.model.train(training)
        return metrics

    def _all_metrics(self, sets: dict, loss_fns: dict) -> dict:
        """Metrics of one validation set; of several, each one's prefixed with its dataset's name
        ("nli_eval_loss") and eval_loss their mean over all rows (what picks the best model by default)."""
        if list(sets) == [""]:
            return self._metrics(sets[""], loss_fns[""])
        metrics, total = {}, 0.0
        for name, ds in sets.items():
            one = self._metrics(ds, loss_fns[name])
            metrics.update({f"{name}_{key}": value for key, value in one.items()})
            total += one["eval_loss"] * len(ds)
        return {"eval_loss": total / sum(map(len, sets.values())), **metrics}

    def _evaluate(self, sets, loss_fns, step, best, optimizer=None, sampler=None) -> bool:
        """Evaluate ({name: tokenized validation set}, {name: its loss}), emit, track the best model; True
        when early stopping says stop."""
        self.emit("phase", name="evaluating")
        metrics = self._all_metrics(sets, loss_fns)
        self.emit("eval", step=step, metrics=metrics)
        if step:   # the evaluation before the first step is followed by "compiling"
            self.emit("phase", name="training")
        a = self.args
        name = a.metric_for_best_model or "eval_loss"
        if optimizer is None or name not in metrics:
            return False
        greater = a.greater_is_better if a.greater_is_better is not None else not name.endswith("loss")
        value = metrics[name]
        improved = best["metric"] is None or (value > best["metric"] if greater else value < best["metric"])
        if improved:
            best.update(metric=value, step=step, bad_evals=0, metrics=metrics)
            if a.load_best_model_at_end or a.metric_for_best_model:
                path = self._save_checkpoint(step, optimizer, sampler, best)
                best["checkpoint"] = str(path) if path else None
                if path is None:
                    self._best_weights = dict(tree_flatten(self.model.parameters()))
        else:
            best["bad_evals"] += 1
        return a.early_stopping_patience > 0 and best["bad_evals"] >= a.early_stopping_patience

    # -- checkpoints --------------------------------------------------------------------------
    def _save_checkpoint(self, step, optimizer, sampler, best) -> Path | None:
        if self.output_dir is None:
            return None
        self.emit("phase", name="saving")
        root = self.output_dir / "checkpoints"
        data_state = self._data_state if self._data_state is not None else sampler.state_dict()
        state = {"step": step, "sampler": data_state, "best": best, "config": self._config(),
                 "metrics": next((e["metrics"] for e in reversed(self.history) if e["event"] == "eval"), {}),
                 "history": self.history[-2000:]}
        path = save_checkpoint(root, step, self.model, optimizer, state)
        self._saved_step = step
        keep = {Path(best["checkpoint"]).name} if best.get("checkpoint") else set()
        rotate_checkpoints(root, self.args.save_total_limit, keep)
        self.emit("checkpoint", step=step, path=str(path))
        if not self.stop_requested:
            self.emit("phase", name="training")
        return path

    def _config(self) -> dict:
        return {"task_type": self.task, "training": self.args.to_dict(), **self.run_info}
