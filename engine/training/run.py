"""A whole training run: data → model → Trainer → saved model + raclate_run.json, with events,
error classification and the run record the GUI's Runs page reads."""
from __future__ import annotations

import json
import os
import platform
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from engine import errors
from engine.events import make_event
from engine.run_record import RUN_FILE, versions, write_run_record
from engine.training.config import RunConfig


def classify_error(exc: BaseException) -> tuple[str, str, str]:
    """(kind, message, hint): a collective that failed because another rank went away, else
    the engine-wide classification (engine/errors.py)."""
    from engine.training.distributed import peer_failure
    return peer_failure(exc) or errors.classify_error(exc)


def train_run(cfg: RunConfig, callbacks=(), *, overwrite: bool = False, stop_handler=None) -> dict:
    """Run training for a resolved config (engine.training.config.build_run_config).
    Events go to ``callbacks``; a failure emits an ``error`` event, then raises. The output folder is
    written only once the data and the model have loaded (bad input leaves nothing behind)."""
    import mlx.core as mx
    from engine.data import load_dataset
    from engine.models import load_model
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
    history, started = [], False
    callbacks = list(callbacks) + [lambda e: history.append(e) if e["event"] in ("step", "eval") else None]

    def emit(event_name, /, **fields):
        for callback in callbacks if main else ():
            callback(make_event(event_name, **fields))

    def crashed(kind, message, hint):
        emit("error", kind=kind, message=message, hint=hint)
        if started and main:
            record.update(status="crashed", ended=time.time(), error={"kind": kind, "message": message, "hint": hint},
                          history=history)
            write_run_record(out, record)

    if world is not None:
        world.fatal_handlers[:] = [crashed]   # a peer lost while this process is stuck in a collective

    try:
        if args.push_to_hub:  # no token or a bad repo id: fail before any work is done
            from engine.outputs.hub import check_push
            check_push(args.hub_model_id)
        emit("phase", name="loading_data")
        data = load_dataset(dargs)
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
            is_regression=info.is_regression, use_late_interaction=args.use_late_interaction,
            late_interaction_dim=args.late_interaction_dim)
        if main:
            _prepare_output(out, overwrite, record, bool(args.resume_from_checkpoint))
        started = True
        trainer = Trainer(model, tokenizer, dargs.task_type, args, data.train, data.validation,
                          callbacks=callbacks, label_info=info,
                          run_info={"run_id": record["run_id"], "model": cfg.model,
                                    "use_chat_template": dargs.use_chat_template}, world=world)
        if stop_handler is not None:
            stop_handler(trainer)
        result = trainer.train()
        if world is not None:
            world.finish()   # no collective after this point: the other ranks may exit
            if not main:
                return {**record, "status": "finished", "final_step": result["step"]}
        emit("phase", name="saving")
        model.save_pretrained(out)
        tokenizer.save_pretrained(str(out))
        record.update(status="stopped" if result["stopped_early"] else "finished", ended=time.time(),
                      metrics=result["metrics"], final_step=result["step"], best_step=result["best_step"],
                      history=history)
        write_run_record(out, record)
        from engine.outputs.export import finish_output
        finish_output(model, tokenizer, out, record, args)  # self-check, model card, Hub push
        emit("finished", output_dir=str(out), metrics=result["metrics"], stopped_early=result["stopped_early"],
             best_step=result["best_step"])
        return record
    except BaseException as exc:
        if world is not None:
            world.handling_failure()
        kind, message, hint = classify_error(exc)
        if world is not None:
            world.fail(message)   # the peers learn why (they prefix this rank's number)
        if not isinstance(exc, KeyboardInterrupt):
            emit("error", kind=kind, message=message, hint=hint)
        if started and main:
            record.update(status="crashed" if not isinstance(exc, KeyboardInterrupt) else "stopped",
                          ended=time.time(), error={"kind": kind, "message": message, "hint": hint}, history=history)
            try:
                write_run_record(out, record)
            except OSError:
                pass
        raise


def _prepare_output(out: Path, overwrite: bool, record: dict, resume: bool) -> None:
    """Clear a replaced run, keep the id of a resumed one, and write the first run record."""
    if overwrite and out.exists():
        import shutil
        for child in ("checkpoints", RUN_FILE):
            p = out / child
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    if resume and (out / RUN_FILE).exists():
        previous = json.loads((out / RUN_FILE).read_text())
        record.update(run_id=previous.get("run_id", record["run_id"]), started=previous.get("started", record["started"]))
    out.mkdir(parents=True, exist_ok=True)
    write_run_record(out, record)
