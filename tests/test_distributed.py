"""Data-parallel training (engine/training/distributed.py, engine/training/heartbeat.py, `raclate launch`): two local
processes on the ring backend over loopback train like one process with the global batch, gathered
contrastive losses equal the global-batch loss, rank 0 alone writes, Stop and resume work, and a
rank that dies, freezes or fails ends the others with a clear error within seconds.

The ranks are started as mlx.launch starts them on one machine (MLX_RANK + MLX_HOSTFILE), except in
the test of the CLI contract, which runs mlx.launch itself."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.commands.launch import free_ports
from tests.trainer_helpers import (dataset, labels, load, max_diff, of, pair_rows, sentiment_rows, tiny_bert_dir,
                                   train, weights)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKER = ROOT / "tests" / "dist_worker.py"


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "reviews.jsonl"
    rows = [{"review": r["text"], "sentiment": ["neg", "pos"][r["label"]]} for r in sentiment_rows(72)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def spawn(argvs, tmp_path, env=None):
    """One process per argv with the environment mlx.launch gives local ranks; rank 0's stdout piped."""
    port = free_ports(len(argvs))
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{port + r}"] for r in range(len(argvs))]))
    procs = []
    for rank, argv in enumerate(argvs):
        e = dict(os.environ, MLX_RANK=str(rank), MLX_HOSTFILE=str(hostfile), PYTHONUNBUFFERED="1", **(env or {}))
        procs.append(subprocess.Popen([sys.executable, *map(str, argv)], env=e, cwd=ROOT, text=True,
                                      stdout=subprocess.PIPE if rank == 0 else subprocess.DEVNULL,
                                      stderr=open(tmp_path / f"rank{rank}.err", "w")))
    return procs


def finish(procs, timeout=240):
    try:
        return [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def cli_args(bert_dir, data_file, out, *extra):
    # --dropout 0: the masks two ranks draw for their halves are not those one process draws for the global batch.
    return ["train", "--model", str(bert_dir), "--task", "text-classification", "--data", str(data_file),
            "--column", "text=review", "--column", "label=sentiment", "--output", str(out), "--lr", "1e-3",
            "--max-length", "32", "--seed", "5", "--logging-steps", "1", "--dropout", "0", *map(str, extra)]


def model_weights(out):
    import mlx.core as mx
    return {k: np.array(v) for k, v in mx.load(str(Path(out) / "model.safetensors")).items()}


def read_events(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# -- fast: the pieces ------------------------------------------------------------------------------
def test_a_single_process_is_a_world_of_one(monkeypatch):
    import mlx.core as mx
    from engine.training import distributed
    for name in ("MLX_RANK", "MLX_HOSTFILE", "OMPI_COMM_WORLD_RANK", "MLX_JACCL_COORDINATOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_ACTIVE", None)
    world = distributed.init_world()
    assert (world.rank, world.size, world.is_main) == (0, 1, True)
    assert world.any(True) and not world.any(False) and world.from_main(True)
    assert world.sum_ints(3, 4) == [3, 4]
    world.check_same({"rows": 5})
    x = mx.ones((2, 3))
    assert world.broadcast(x) is x and distributed.gather_group(True) is None


def test_mnrl_with_offsets_splits_the_global_batch_exactly():
    """Per-rank losses over the gathered candidates (offset = rank × b) average to the global loss."""
    import mlx.core as mx
    from engine.losses import mnrl_loss
    from engine.losses.late_interaction import late_interaction_loss
    rng = np.random.default_rng(0)
    b, n, d = 3, 2, 8
    anchors = mx.array(rng.normal(size=(n * b, d)).astype(np.float32))
    cands = mx.array(rng.normal(size=(2 * n * b, d)).astype(np.float32))   # positives, then negatives
    hashes = mx.array([1, 2, 3, 4, 2, 6, 7, 8, 9, 10, 11, 12], dtype=mx.int32)   # row 4's positive repeats row 1's
    anchor_hashes = mx.array([20, 21, 22, 20, 24, 25], dtype=mx.int32)
    for symmetric in (False, True):
        whole = mnrl_loss(anchors, cands, symmetric=symmetric, candidate_hashes=hashes, anchor_hashes=anchor_hashes)
        parts = [mnrl_loss(anchors[r * b:(r + 1) * b], cands, symmetric=symmetric, candidate_hashes=hashes,
                           anchor_hashes=anchor_hashes, offset=r * b, anchors=anchors) for r in range(n)]
        assert sum(p.item() for p in parts) / n == pytest.approx(whole.item(), abs=1e-6)
    q = mx.array(rng.normal(size=(n * b, 4, d)).astype(np.float32))
    docs = mx.array(rng.normal(size=(2 * n * b, 5, d)).astype(np.float32))
    qm, dm = mx.ones((n * b, 4)), mx.ones((2 * n * b, 5))
    whole = late_interaction_loss(q, qm, docs, dm, candidate_hashes=hashes)
    parts = [late_interaction_loss(q[r * b:(r + 1) * b], qm[r * b:(r + 1) * b], docs, dm, candidate_hashes=hashes,
                                   offset=r * b) for r in range(n)]
    assert sum(p.item() for p in parts) / n == pytest.approx(whole.item(), abs=1e-5)


def test_launch_writes_the_host_file_and_the_mlx_launch_command(tmp_path, capsys):
    from engine.cli import main
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"model": "default", "task": "masked-lm", "data": {"data": "d.jsonl"}}))
    assert main(["launch", "-n", "2", "--dry-run", "--", "train", "--config", str(config), "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    hostfile = json.loads("\n".join(out.strip().splitlines()[1:-1]))   # '# host file PATH', the JSON, the command
    assert hostfile["hosts"] == [{"ssh": "127.0.0.1", "ips": ["127.0.0.1"]}] * 2 and hostfile["backend"] == "ring"
    command = out.strip().splitlines()[-1]
    assert "mlx.launch" in command and "--backend ring" in command and "--starting-port" in command
    assert command.endswith(f"train --config {config} --batch-size 4 --distributed")   # local: the file stays a path

    assert main(["launch", "--hosts", "mac-a=10.0.0.1,10.0.0.2", "--dry-run", "--", "train", "--config",
                 str(config)]) == 0
    out = capsys.readouterr().out
    hostfile = json.loads("\n".join(out.strip().splitlines()[1:-1]))
    assert hostfile["hosts"] == [{"ssh": "mac-a", "ips": ["10.0.0.1"]}, {"ssh": "10.0.0.2", "ips": ["10.0.0.2"]}]
    assert '"model":"default"' in out.splitlines()[-1]   # remote hosts get the config inline

    assert main(["launch", "-n", "2", "--dry-run", "--", "eval", "--model", "x"]) == 2
    assert "-- train" in capsys.readouterr().err


def test_ring_ports_are_free_and_below_the_ephemeral_range():
    """A rank connecting to a neighbour not yet listening must not be handed the neighbour's port as its own
    source port (TCP self-connect): the ring's ports lie below the range outgoing connections draw from."""
    import socket
    from engine.commands.launch import ephemeral_ports
    low = ephemeral_ports()[0]
    for _ in range(20):
        start = free_ports(4)
        assert 1024 <= start and start + 4 <= low
        for port in range(start, start + 4):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))


def test_inline_config_json(tmp_path):
    from engine.cli import build_parser
    from engine.commands.train import resolve_train_config
    text = json.dumps({"model": "m", "task": "masked-lm", "data": {"data": "d.jsonl"},
                       "training": {"output_dir": "o", "batch_size": 4, "distributed": True}})
    cfg = resolve_train_config(build_parser().parse_args(["train", "--config", text]))
    assert cfg.training.batch_size == 4 and cfg.training.distributed and cfg.training.gather_across_ranks


# -- two processes ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_gathered_contrastive_losses_equal_the_global_batch(bert_dir, tmp_path):
    """Loss and (rank-averaged) gradients of MNRL, symmetric MNRL, cached MNRL, late interaction and cached late
    interaction with
    negatives gathered across 2 ranks equal the plain loss on the global batch of 8; a positive
    repeated across the ranks is masked, so the text hashes were gathered too."""
    started = time.perf_counter()
    codes = finish(spawn([[WORKER, "losses", bert_dir, tmp_path]] * 2, tmp_path))
    assert codes == [0, 0], (tmp_path / "rank0.err").read_text()[-3000:] + (tmp_path / "rank1.err").read_text()[-3000:]
    got = [json.loads((tmp_path / f"losses-rank{r}.json").read_text()) for r in (0, 1)]
    report = []
    for name in ("mnrl", "mnrl_symmetric", "cached_mnrl", "late_interaction", "cached_late_interaction"):
        e = got[0][name]
        report.append(f"{name}: loss {e['loss']:.6f} vs {e['ref_loss']:.6f} (Δ {e['loss_diff']:.2g}), "
                      f"max |Δgrad| {e['grad_diff']:.2g} (largest grad {e['grad_scale']:.2g})")
        assert e["loss_diff"] <= 1e-5
        assert e["grad_diff"] <= 1e-5 * max(1.0, e["grad_scale"])
        assert abs(e["local_only_loss"] - e["ref_loss"]) > 0.1      # without gathering: another loss
        assert got[1][name]["loss"] == e["loss"]                     # every rank logs the same mean
    assert abs(got[0]["mnrl"]["without_hashes"] - got[0]["mnrl"]["ref_loss"]) > 1e-3
    assert all("disagree on: training rows" in g["check_same"] for g in got)
    assert [g["any"] for g in got] == [True, True] and [g["from_main"] for g in got] == [[True, False]] * 2
    print("\n" + "\n".join(report) + f"\n({time.perf_counter() - started:.1f} s)")


@pytest.mark.slow
def test_two_ranks_train_like_one_process_with_the_global_batch(bert_dir, tmp_path):
    """Per-rank batch 4 on 2 ranks for 6 steps = batch 8 in one process (the sampler's global batch of 8
    is split in two contiguous halves; the mean of the two halves' mean losses is the global mean).
    Both ranks end with identical weights, and rank 0 alone writes files and events."""
    from tests.dist_worker import TRAINER_ARGS, TRAINER_CASES
    codes = finish(spawn([[WORKER, "trainer", bert_dir, tmp_path]] * 2, tmp_path))
    assert codes == [0, 0], (tmp_path / "rank0.err").read_text()[-3000:] + (tmp_path / "rank1.err").read_text()[-3000:]
    report = []
    for name, (task, load_kw, rows, info, extra) in TRAINER_CASES.items():
        model, tok = load(bert_dir, task, **load_kw)
        train(model, tok, task, dataset(rows()), label_info=info, **{**TRAINER_ARGS, **extra, "batch_size": 8})
        single = weights(model)
        ranks = [dict(np.load(tmp_path / f"{name}-rank{r}.npz")) for r in (0, 1)]
        start = weights(load(bert_dir, task, **load_kw)[0])   # without the adapters of the LoRA case
        moved = max_diff({k: single[k] for k in start}, start)
        assert single.keys() - start.keys() == {k for k in single if "lora" in k} and (name == "lora") == (
            single.keys() != start.keys())
        diff = max_diff(ranks[0], single)
        report.append(f"{name}: max |Δw| 2×4 vs 1×8 = {diff:.2g} (training moved the weights by {moved:.2g})")
        assert moved > 1e-3 and max_diff(ranks[0], ranks[1]) == 0.0
        assert diff <= (1e-5 if name != "late" else 2e-5)   # MaxSim: a max over tokens amplifies rounding a little
        assert sorted(p.name for p in (tmp_path / name / "rank0" / "checkpoints").iterdir()) == \
            ["step-0000003", "step-0000006"]
        assert not (tmp_path / name / "rank1").exists()
        events = [json.loads((tmp_path / f"{name}-rank{r}.json").read_text()) for r in (0, 1)]
        assert events[1]["events"] == 0 and events[0]["events"] > 10
        assert events[0]["run_started"][0]["world_size"] == 2
    print("\n" + "\n".join(report))


@pytest.fixture(scope="module")
def single_run(bert_dir, data_file, tmp_path_factory):
    """The reference: one process, batch 8, 12 steps."""
    from engine.cli import main
    out = tmp_path_factory.mktemp("single") / "out"
    assert main(cli_args(bert_dir, data_file, out, "--batch-size", "8", "--max-steps", "12")) == 0
    return model_weights(out)


@pytest.mark.slow
def test_cli_under_mlx_launch(bert_dir, data_file, single_run, tmp_path):
    """The contract: `mlx.launch -n 2 --backend ring --python PY raclate train ... --distributed` with
    --batch-size per rank, events from rank 0 only, and the model of one process with batch 8."""
    out = tmp_path / "out"
    argv = [BIN / "mlx.launch", "-n", "2", "--backend", "ring", "-p", str(free_ports(2)), "--python", sys.executable,
            BIN / "raclate", *cli_args(bert_dir, data_file, out, "--batch-size", "4", "--max-steps", "12",
                                       "--save-steps", "5"), "--distributed", "--events", "-"]
    started = time.perf_counter()
    done = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    events = read_events(done.stdout)
    assert [e["event"] for e in events].count("run_started") == 1
    assert events[-1]["event"] == "finished", (events[-1], done.stderr[-3000:])
    assert of(events, "run_started")[0]["world_size"] == 2 and len(of(events, "step")) == 12
    assert [e["step"] for e in of(events, "checkpoint")] == [5, 10, 12]
    diff = max_diff(model_weights(out), single_run)
    print(f"\nmlx.launch 2 ranks × batch 4 vs 1 process × batch 8, 12 steps: max |Δw| = {diff:.2g} "
          f"({time.perf_counter() - started:.1f} s)")
    assert diff <= 1e-5


@pytest.mark.slow
def test_stop_reaches_every_rank_and_the_run_resumes(bert_dir, data_file, single_run, tmp_path):
    """SIGINT to rank 0 alone: both ranks stop after the same step, rank 0 checkpoints; `raclate launch
    -n 2 ... --resume latest` then ends where one uninterrupted process ends."""
    out = tmp_path / "out"
    args = cli_args(bert_dir, data_file, out, "--batch-size", "4", "--max-steps", "12", "--save-steps", "0")
    procs = spawn([["-m", "engine.cli", *args, "--distributed", "--events", "-"]] * 2, tmp_path)
    events = []
    for line in procs[0].stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "step" and events[-1]["step"] >= 3:
            procs[0].send_signal(signal.SIGINT)
            break
    events += read_events(procs[0].stdout.read())
    assert finish(procs) == [0, 0], (tmp_path / "rank0.err").read_text()[-3000:]
    stopped_at = of(events, "step")[-1]["step"]
    assert 3 <= stopped_at < 12 and events[-1]["event"] == "finished" and events[-1]["stopped_early"]
    assert of(events, "checkpoint")[-1]["step"] == stopped_at

    resumed = subprocess.run([str(BIN / "raclate"), "launch", "-n", "2", "--", *map(str, args), "--resume", "latest",
                              "--events", "-"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    events = read_events(resumed.stdout)
    assert of(events, "run_started")[0]["resumed_from_step"] == stopped_at
    assert of(events, "finished")[0]["stopped_early"] is False
    diff = max_diff(model_weights(out), single_run)
    print(f"\nstopped at step {stopped_at}, resumed on 2 ranks: max |Δw| vs 1 process = {diff:.2g}")
    assert diff <= 1e-5


def run_until_step(bert_dir, data_file, tmp_path, *extra, argvs=None):
    out = tmp_path / "out"
    args = [*cli_args(bert_dir, data_file, out, "--batch-size", "4", "--max-steps", "100000", "--save-steps", "0",
                      *extra), "--distributed", "--events", "-"]
    procs = spawn(argvs or [["-m", "engine.cli", *args]] * 2, tmp_path)
    events = []
    for line in procs[0].stdout:
        events.append(json.loads(line))
        if events[-1]["event"] in ("error", "finished") or (events[-1]["event"] == "step" and events[-1]["step"] >= 3):
            break
    return procs, events, out


def assert_stops_with(procs, events, out, tmp_path, needle, within_s):
    started = time.perf_counter()
    try:
        rc = procs[0].wait(timeout=within_s + 30)
    finally:
        for p in procs:
            p.kill()
    took = time.perf_counter() - started
    events += read_events(procs[0].stdout.read())
    err = (tmp_path / "rank0.err").read_text()
    error = of(events, "error")
    assert rc == 1 and error and error[-1]["kind"] == "peer_lost", err[-2000:]
    assert needle in error[-1]["message"] and "--resume latest" in error[-1]["hint"]
    assert needle in err and "Traceback" not in err
    assert json.loads((out / "raclate_run.json").read_text())["status"] == "crashed"
    assert took <= within_s, f"rank 0 took {took:.1f} s to stop"
    return took


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_on_the_other_within_seconds(bert_dir, data_file, tmp_path):
    procs, events, out = run_until_step(bert_dir, data_file, tmp_path)
    procs[1].send_signal(signal.SIGKILL)
    took = assert_stops_with(procs, events, out, tmp_path, "Rank 1", within_s=5)
    print(f"\nrank 1 SIGKILLed: rank 0 stopped with an error after {took:.2f} s")


@pytest.mark.slow
def test_a_frozen_rank_trips_the_heartbeat_timeout(bert_dir, data_file, tmp_path):
    """SIGSTOP leaves rank 1's sockets open, so only the missing heartbeats tell: rank 0 leaves its
    blocked all_sum after --peer-timeout (3 s) plus a 2 s grace."""
    procs, events, out = run_until_step(bert_dir, data_file, tmp_path, "--peer-timeout", "3")
    procs[1].send_signal(signal.SIGSTOP)
    try:
        took = assert_stops_with(procs, events, out, tmp_path, "No heartbeat from rank 1", within_s=9)
    finally:
        procs[1].send_signal(signal.SIGCONT)
    print(f"\nrank 1 SIGSTOPped: rank 0 stopped with an error after {took:.2f} s (timeout 3 s)")


@pytest.mark.slow
def test_a_rank_that_fails_tells_rank_0_why(bert_dir, data_file, tmp_path):
    """Rank 1's data file is missing on 'its machine': rank 0 reports rank 1's own error."""
    def argv(data):
        return ["-m", "engine.cli", *cli_args(bert_dir, data, tmp_path / "out", "--batch-size", "4", "--max-steps", "5"),
                "--distributed", "--events", "-"]
    procs = spawn([argv(data_file), argv(tmp_path / "missing.jsonl")], tmp_path)
    codes = finish(procs, timeout=120)
    events = read_events(procs[0].stdout.read())
    assert codes[1] == 2 and codes[0] == 1, (tmp_path / "rank0.err").read_text()[-2000:]
    error = of(events, "error")[-1]
    assert error["kind"] == "peer_lost" and error["message"].startswith("Rank 1 failed: ")
    assert "missing.jsonl" in error["message"]
    assert "error (rank 1): " in (tmp_path / "rank1.err").read_text()


def test_launch_exit_status_is_the_failing_ranks():
    from engine.commands.launch import RANK_EXIT, exit_status
    line = "\x1b[33m[WARN] Node with rank 1 exited with code 2 \x1b[0m\n"   # mlx.launch's own log line
    assert [(int(r), int(c)) for r, c in RANK_EXIT.findall(line)] == [(1, 2)]
    assert exit_status(0, [2, -15]) == 2 and exit_status(0, [-15, 1]) == 1     # the others get SIGTERM after
    assert exit_status(0, [-9]) == 137 and exit_status(0, [0, 0]) == 0 and exit_status(3, []) == 3


@pytest.mark.slow
def test_launch_exits_with_the_ranks_error_code(bert_dir, tmp_path):
    """mlx.launch itself exits 0 when its ranks fail; `raclate launch` must not: bad data is exit 2."""
    missing = tmp_path / "missing.jsonl"
    done = subprocess.run([str(BIN / "raclate"), "launch", "-n", "2", "--",
                           *cli_args(bert_dir, missing, tmp_path / "out", "--batch-size", "4")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "missing.jsonl" in done.stderr
