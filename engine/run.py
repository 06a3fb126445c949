"""A whole training run: data → model → Trainer → saved model + raclate_run.json, with events,
error classification and the run record the GUI's Runs page reads."""
from __future__ import annotations

import errno
import json
import os
import platform
import signal
import sys
import time
import traceback
import uuid
from dataclasses import asdict
from pathlib import Path

from engine.events import JsonLineWriter, make_event

RUN_FILE = "raclate_run.json"


def versions() -> dict:
    import importlib.metadata as md
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("raclate-tuner", "mlx", "transformers", "tokenizers", "datasets", "safetensors", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def write_run_record(out: Path, record: dict) -> None:
    from engine.models.saving import write_json
    write_json(out / RUN_FILE, record)


def classify_error(exc: BaseException) -> tuple[str, str, str]:
    """(kind, message, hint) for an error event and the one-paragraph CLI message."""
    from engine.data.errors import DataError
    from engine.models.base import ModelError
    from engine.trainer import TrainingError
    from engine.distributed import peer_failure
    text = str(exc) or type(exc).__name__
    lost = peer_failure(exc)   # a collective failed because another process of a distributed run went away
    if lost:
        return lost
    if isinstance(exc, TrainingError):
        return exc.kind, text, exc.hint
    if isinstance(exc, KeyboardInterrupt):
        return ("stopped", "Stopped at once (a second Ctrl+C) without a final checkpoint.",
                "The last completed checkpoint is intact: continue with --resume latest.")
    if isinstance(exc, DataError):
        fix = getattr(exc, "fix", "") or ""
        return "bad_data", text.removesuffix(f" Fix: {fix}") if fix else text, fix or "Fix the data file or the column mapping."
    if isinstance(exc, ModelError):
        return "bad_model", text, "Check --model: a folder with config.json and model.safetensors, a Hub id, or 'default'."
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or "bad_alloc" in text.lower():
        return ("out_of_memory", f"Ran out of memory: {text}",
                "Lower --batch-size (use --grad-accum to keep the effective batch), lower --max-length, "
                "or pass --grad-checkpoint.")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "io", f"The disk is full: {text}", "Free some space or choose an --output on another disk; " \
                                                  "completed checkpoints are intact."
    if isinstance(exc, OSError):
        return "io", text, "Check that the paths exist and are writable."
    return "internal", f"{type(exc).__name__}: {text}", "Run again with --debug and report the traceback."


def train_run(cfg: dict, callbacks=(), *, overwrite: bool = False, stop_handler=None) -> dict:
    """Run training for a resolved config {model, task, data: DatasetArgs, training: TrainingArgs}.
    Events go to ``callbacks``; a failure emits an ``error`` event, then raises. The output folder is
    written only once the data and the model have loaded (bad input leaves nothing behind)."""
    import mlx.core as mx
    from engine.data import load_dataset
    from engine.models import load_model
    from engine.trainer import Trainer

    args, dargs = cfg["training"], cfg["data"]
    out = Path(args.output_dir)
    world = None
    if args.distributed:  # join before any loading, so a rank that fails early can tell the others why
        from engine.distributed import init_world
        world = init_world(args.peer_timeout)
    main = world is None or world.is_main   # rank 0 alone writes the output folder and events
    run_id = uuid.uuid4().hex[:12]
    # pid and host let a reader tell a live run from one whose process died without a word (Runs page)
    record = {"run_id": run_id, "status": "running", "started": time.time(), "pid": os.getpid(),
              "host": platform.node(), "model": cfg["model"],
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
            from engine.hub import check_push
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
            cfg["model"], dargs.task_type, id2label=info.names if info.names and not info.is_regression else None,
            is_regression=info.is_regression, use_late_interaction=args.use_late_interaction,
            late_interaction_dim=args.late_interaction_dim)
        if main:
            _prepare_output(out, overwrite, record, bool(args.resume_from_checkpoint))
        started = True
        trainer = Trainer(model, tokenizer, dargs.task_type, args, data.train, data.validation,
                          callbacks=callbacks, label_info=info,
                          run_info={"run_id": record["run_id"], "model": cfg["model"],
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
        from engine.export import finish_output
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


class Progress:
    """A tqdm bar on a terminal for step events; silent otherwise. The CLI's way of showing events."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def __call__(self, event: dict) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm
        name = event["event"]
        if name == "run_started":
            self.bar = tqdm(total=event["total_steps"], initial=event.get("resumed_from_step") or 0,
                            unit="step", dynamic_ncols=True, file=sys.stderr)
        elif name == "step" and self.bar is not None:
            self.bar.update(event["step"] - self.bar.n)
            if event.get("loss") is not None:
                self.bar.set_postfix(loss=f"{event['loss']:.4f}", lr=f"{event['learning_rate']:.2e}")
        elif name == "eval" and self.bar is not None:
            shown = {k: round(v, 4) for k, v in event["metrics"].items() if isinstance(v, (int, float))}
            self.bar.write(f"eval @ step {event['step']}: {shown}")
        elif name == "warning":
            (self.bar.write if self.bar else lambda m: print(m, file=sys.stderr))(f"warning: {event['message']}")
        elif name == "finished" and self.bar is not None:
            self.bar.close()


INPUT_ERRORS = ("bad_input", "bad_data", "bad_model")  # exit code 2: the command line or its files need fixing


def run_training(ns) -> int:
    """`raclate train` behind argparse: exit 0 done (or stopped with a checkpoint), 2 bad input
    (flags, data, model), 1 a failure while training, 130 a second Ctrl+C."""
    import datasets
    from engine.distributed import launch_rank
    datasets.disable_progress_bars()  # the CLI shows phases and its own bar, not one bar per map()
    main = launch_rank() == 0   # in a distributed run only rank 0 writes events (and the other outputs)
    writer = JsonLineWriter(ns.events) if ns.events and main else None
    callbacks = ([writer] if writer else []) + [Progress(enabled=main and sys.stderr.isatty() and ns.events != "-")]
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _train_command(ns, writer, callbacks, previous)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if writer:
            writer.close()


def _train_command(ns, writer, callbacks, previous) -> int:
    from engine.cli import CliError, check_output_dir, resolve_train_config
    from engine.distributed import init_world, launch_rank
    rank = launch_rank()
    world = None

    def fail(kind, message, hint, code, emitted=False):
        if writer and not emitted:
            writer(make_event("error", kind=kind, message=message, hint=hint))
        if world is not None and not emitted:
            world.fail(message)
        where = f" (rank {rank})" if rank else ""
        print(f"error{where}: {message}" + (f"\nhint: {hint}" if hint else ""), file=sys.stderr)
        return code

    def fatal(kind, message, hint):   # a peer lost while this process is stuck in a collective
        if writer:
            writer(make_event("error", kind=kind, message=message, hint=hint))

    try:
        if getattr(ns, "distributed", False):  # join first: a rank that fails below tells the others why
            world = init_world(getattr(ns, "peer_timeout", 60.0), fatal_handlers=[fatal])
        cfg = resolve_train_config(ns)
        args = cfg["training"]
        if args.distributed:
            world = init_world(args.peer_timeout, fatal_handlers=[fatal])
        if rank == 0:  # the other ranks never write the output folder (it may not exist on their machine)
            check_output_dir(Path(args.output_dir), args.resume_from_checkpoint, ns.overwrite)
    except CliError as exc:
        return fail("bad_input", str(exc), "", 2)
    except Exception as exc:  # DataError from DatasetArgs validation, ...
        if ns.debug:
            traceback.print_exc()
        return fail(*classify_error(exc), 2)

    def install_stop(trainer):
        def on_signal(signum, frame):
            if trainer.stop_requested:  # a second Ctrl+C: stop now
                raise KeyboardInterrupt
            trainer.request_stop()  # finish the step, write a checkpoint, save the model
        for sig in previous:
            signal.signal(sig, on_signal)

    try:
        record = train_run(cfg, callbacks, overwrite=ns.overwrite, stop_handler=install_stop)
    except BaseException as exc:
        if ns.debug:
            traceback.print_exc()
        kind, message, hint = classify_error(exc)
        code = 130 if isinstance(exc, KeyboardInterrupt) else 2 if kind in INPUT_ERRORS else 1
        return fail(kind, message, hint, code, emitted=not isinstance(exc, KeyboardInterrupt))
    if ns.events != "-" and rank == 0:
        metrics = {k: round(v, 4) for k, v in (record.get("metrics") or {}).items() if isinstance(v, (int, float))}
        print(f"{record['status']}: model saved to {cfg['training'].output_dir}" + (f" — {metrics}" if metrics else ""))
    return 0
