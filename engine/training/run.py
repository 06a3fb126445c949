"""A whole training run: data → model → Trainer → saved model + raclate_run.json, with events,
error classification and the run record the GUI's Runs page reads."""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import shutil
import threading
import time
import uuid
from dataclasses import asdict, replace
from pathlib import Path

from engine import errors
from engine.events import make_event
from engine.files import LOCK_FILE, lock_folder, lock_holder, swap_folder
from engine.run_record import RUN_FILE, versions, write_run_record
from engine.training.config import RunConfig, check_output_contents, holds_files, replacement_dir


ADAPTER_DIR = "adapter"   # --save-adapter: the PEFT adapter, beside the merged model
# The library the end-of-run self-check reloads each output format in (engine/outputs/export.py).
REFERENCE_LIBRARIES = {"sentence-transformers": "sentence_transformers", "pylate": "pylate",
                       "transformers": "transformers"}


def classify_error(exc: BaseException) -> tuple[str, str, str]:
    """(kind, message, hint): a collective that failed because another rank went away, else
    the engine-wide classification (engine/errors.py)."""
    from engine.training.distributed import peer_failure
    return peer_failure(exc) or errors.classify_error(exc)


def train_run(cfg: RunConfig, callbacks=(), *, overwrite: bool = False, stop_handler=None) -> dict:
    """Run training for a resolved config (engine.training.config.build_run_config).
    Events go to ``callbacks``; a failure emits an ``error`` event, then raises. The output folder is
    written only once the data and the model have loaded (bad input leaves nothing behind), and is
    locked while the run writes it. ``overwrite`` replaces an earlier run there: the new run trains in
    a folder beside it (``replacement_dir``) that is swapped in once it has finished."""
    import mlx.core as mx
    from engine.data.mixing import load_datasets
    from engine.models import load_model, task_refusal
    from engine.models.peft_format import save_adapter
    from engine.models.dropout import dropout_values
    from engine.models.memory import training_memory
    from engine.models.saving import is_embedding
    from engine.training.trainer import Trainer

    args, dargs = cfg.training, cfg.data
    out = Path(args.output_dir)
    world = None
    if args.distributed:  # join before any loading, so a rank that fails early can tell the others why
        from engine.training.distributed import init_world
        world = init_world(args.peer_timeout)
    main = world is None or world.is_main   # rank 0 alone writes the output folder and events
    run_id = uuid.uuid4().hex[:12]
    # pid and host let a reader tell a live run from one whose process died without a word (Runs page)
    record = {"run_id": run_id, "status": "running", "started": time.time(), "pid": os.getpid(),
              "host": platform.node(), "model": cfg.model,
              "task": dargs.task_type, "data": asdict(dargs), "training": args.to_dict(), "versions": versions(),
              "seed": args.seed}
    history, phases, started = [], set(), False
    work, locks = out, []   # the folder this run writes: ``out``, or the replacement beside it

    def keep(e):  # the record keeps the curves and the parameter counts; the phases tell what Ctrl+C stopped
        if e["event"] in ("step", "eval"):
            history.append(e)
        elif e["event"] == "phase":
            if e["name"] == "training" and "training" not in phases:   # the first step has run: off the
                _preload_reference(model)                               # path to it, import the check's library
            phases.add(e["name"])
        elif e["event"] == "run_started":
            record["parameters"] = {k: e[f"{k}_parameters"] for k in ("trainable", "frozen", "total")}
        elif e["event"] == "batch_size_chosen":   # --batch-size auto: what was measured and chosen
            record["batch_size_chosen"] = {k: v for k, v in e.items() if k not in ("event", "time")}

    callbacks = list(callbacks) + [keep]

    def emit(event_name, /, **fields):
        for callback in callbacks if main else ():
            callback(make_event(event_name, **fields))

    def crashed(kind, message, hint):
        emit("error", kind=kind, message=message, hint=hint)
        if started and main:
            record.update(status="crashed", ended=time.time(), error={"kind": kind, "message": message, "hint": hint},
                          history=history)
            write_run_record(work, record)

    if world is not None:
        world.fatal_handlers[:] = [crashed]   # a peer lost while this process is stuck in a collective

    try:
        if args.push_to_hub:  # no token or a bad repo id: fail before any work is done
            from engine.outputs.hub import check_push
            check_push(args.hub_model_id)
        emit("phase", name="loading_data")
        data = load_datasets(dargs)   # several datasets: {name: split} (engine/data/mixing.py)
        record["data_fingerprints"] = {k: getattr(v, "_fingerprint", None) for k, v in data.splits.items()}
        record["label_info"] = data.label_info.to_dict()
        for finding in data.report.findings:
            if finding.severity == "warning":
                emit("warning", message=finding.message)
        emit("phase", name="loading_model")
        info = data.label_info
        mx.random.seed(args.seed)  # a new head's initial weights depend on the seed, not on the clock
        model, tokenizer = load_model(
            cfg.model, dargs.task_type, id2label=info.names if info.names and not info.is_regression else None,
            is_regression=info.is_regression, is_multi_label=info.is_multi_label,
            use_late_interaction=args.use_late_interaction,
            late_interaction_dim=args.late_interaction_dim, bidirectional=args.bidirectional,
            dropout=args.dropout, training=training_memory(args, dargs.task_type))
        refusal = task_refusal(model.info.config["model_type"], dargs.task_type)
        if refusal:   # a Hub model that was not on this machine when the config was built
            raise errors.UsageError(refusal)
        record["dropout"] = dropout_values(model)  # what training uses: the config's values or --dropout
        if args.save_adapter and is_embedding(model) and (model.dense or model.info.late_interaction):
            raise errors.UsageError("--save-adapter writes the encoder's adapter only, and this model also trains a "
                                    "Dense projection that it would lose. Leave --save-adapter off: the output holds "
                                    "the merged model.")
        if main:
            work, locks = _prepare_output(out, overwrite, args.resume_from_checkpoint, record, emit)
        started = True
        trainer = Trainer(model, tokenizer, dargs.task_type, replace(args, output_dir=str(work)), data.train,
                          data.validation,
                          callbacks=callbacks, label_info=info,
                          run_info={"run_id": record["run_id"], "model": cfg.model,
                                    "use_chat_template": dargs.use_chat_template, "dropout": record["dropout"]},
                          world=world, sampling=dargs.sampling,
                          losses={name: loss for name, loss, _ in dargs.per_dataset()})
        if stop_handler is not None:
            stop_handler(trainer)
        result = trainer.train()
        if world is not None:
            world.finish()   # no collective after this point: the other ranks may exit
            if not main:
                return {**record, "status": "finished", "final_step": result["step"]}
        emit("phase", name="saving")
        _save_model(model, tokenizer, work)   # adapters merged: plain full weights
        if args.save_adapter:
            save_adapter(model, work / ADAPTER_DIR, model.info.source, is_embedding(model))   # an adapter folder's base
            tokenizer.save_pretrained(str(work / ADAPTER_DIR))   # as `raclate export --format peft` writes it
        record.update(status="stopped" if result["stopped_early"] else "finished", ended=time.time(),
                      metrics=result["metrics"], final_step=result["step"], best_step=result["best_step"],
                      history=history)
        write_run_record(work, record)
        if work != out:   # the replacement has finished: now, and only now, it takes the old run's place
            swap_folder(work, out)
            work = out
        from engine.outputs.export import finish_output
        finish_output(model, tokenizer, out, record, args)  # self-check, model card, Hub push
        emit("finished", output_dir=str(out), metrics=result["metrics"], stopped_early=result["stopped_early"],
             best_step=result["best_step"])
        return record
    except BaseException as exc:
        if world is not None:
            world.handling_failure()
        interrupted = isinstance(exc, KeyboardInterrupt)
        shown = exc
        if interrupted and not isinstance(exc, errors.Interrupted):   # say whether anything was saved
            shown = errors.Interrupted(training=bool(phases & {"compiling", "training"}))
        kind, message, hint = classify_error(shown)
        if work != out:   # a replacement: continuing it takes --overwrite too
            hint = (hint + " " if hint else "") + (
                f"This run replaces the one in {out}, which was kept as it was; it is in {work}: continue it "
                "with --overwrite --resume latest, or start it again with --overwrite.")
        if world is not None:
            world.fail(message)   # the peers learn why (they prefix this rank's number)
        emit("error", kind=kind, message=message, hint=hint)
        if started and main:
            status = "stopped" if interrupted else "failed" if kind == "io" else "crashed"
            record.update(status=status, ended=time.time(), error={"kind": kind, "message": message, "hint": hint},
                          history=history)
            _write_final_record(work, record)
        if shown is not exc:
            raise shown from exc
        raise
    finally:
        for lock in locks:
            lock.release()


def _preload_reference(model) -> None:
    """Import the self-check's reference library (torch and sentence-transformers, PyLate or transformers:
    seconds of start-up) in a thread while the run trains, so the check after the last step finds it
    loaded. Started once the first step has run: before it, the import would compete with tokenizing and
    compiling for the cores. Absent or failing to import: the check says so itself (it falls back to the
    engine)."""
    from engine.outputs.export import default_format
    name = REFERENCE_LIBRARIES[default_format(model)]
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec(name) is None:
        return

    def load():
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 — the self-check reports a library that does not import
            pass
    threading.Thread(target=load, name="raclate-preload-reference", daemon=True).start()


def _prepare_output(out: Path, overwrite: bool, resume: str | None, record: dict, emit) -> tuple[Path, list]:
    """Lock the output folder, check it again under the lock (another run may have written it since
    the command's check), keep the id of a resumed run, and write the first run record. Returns the
    folder the run writes (the replacement beside ``out`` when ``overwrite`` replaces a run) and the locks."""
    check_output_contents(out, resume, overwrite)   # before creating anything, even the lock file
    work = replacement_dir(out) if overwrite and (resume or holds_files(out)) else out
    locks = []
    try:
        for folder in dict.fromkeys((out, work)):   # the target first: every run takes them in one order
            folder.mkdir(parents=True, exist_ok=True)
            lock = lock_folder(folder)
            if lock is None:
                raise errors.UsageError(f"Output folder {folder} is in use by another run "
                                        f"({lock_holder(folder) or 'another process'}); nothing was written. "
                                        "Wait for that run to end (or stop it), or choose another folder.")
            locks.append(lock)
        check_output_contents(out, resume, overwrite)
        if work != out and not resume and holds_files(work):   # a replacement that did not finish: start over
            for child in work.iterdir():
                if child.name != LOCK_FILE:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            emit("warning", message=f"Discarded the unfinished replacement in {work} and started it again.")
        if resume and (work / RUN_FILE).exists():
            previous = json.loads((work / RUN_FILE).read_text())
            record.update(run_id=previous.get("run_id", record["run_id"]),
                          started=previous.get("started", record["started"]))
            if previous.get("name"):   # the name the user gave the run (engine.run_record.set_run_name)
                record["name"] = previous["name"]
        write_run_record(work, record)
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return work, locks


def _save_model(model, tokenizer, folder: Path) -> None:
    """The final model and tokenizer; a full disk is said as such, with the space the weights need."""
    from mlx.utils import tree_flatten
    try:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(str(folder))
    except (OSError, RuntimeError) as exc:
        if errors.write_failed(exc):
            needed = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
            raise errors.disk_full(folder, needed, "the final model", exc) from exc
        raise


def _write_final_record(folder: Path, record: dict) -> None:
    """The record of a run that ended on an error; on a full disk, at least the status and the reason
    (the step history is the large part)."""
    for shown in (record, {k: v for k, v in record.items() if k != "history"}):
        try:
            write_run_record(folder, shown)
            return
        except OSError:
            pass
