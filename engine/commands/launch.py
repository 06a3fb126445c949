"""`raclate launch [-n N | --hosts H1,H2 | --hostfile F] -- train ...`: data-parallel training.

Writes an MLX host file (ring backend) and hands over to `mlx.launch`, which starts one
`raclate train ... --distributed` per entry: locally for `-n N` alone, over SSH for `--hosts`
(same Python path and working folder on every machine; see README "Train on several Macs").
`-n 1` alone runs that one process directly (a world of one: mlx.launch would hand it an empty
host file, which MLX cannot parse).
`--batch-size` is per process: the global batch is batch size × processes. A `--config FILE` is
passed inline to other machines, so only the data and the model have to exist there.

Ctrl+C (or the app's Stop) reaches the local processes, which agree with the others to stop at the
same step; rank 0 writes the checkpoint. The launcher itself ignores it so it can relay the last
events.

`mlx.launch` exits 0 even when a rank fails (it logs "Node with rank R exited with code C"), so this
command reads that log on the way through and exits with the first failing rank's code (2 bad input,
1 a failure while training, 128+N a rank ended by signal N): a script can trust the exit status."""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from engine.commands import guarded

LOCAL = "127.0.0.1"
RANK_EXIT = re.compile(r"rank (\d+) exited with code (-?\d+)")
LAUNCH_MAIN = "import sys; from mlx._distributed_utils.launch import main; sys.argv[0] = 'mlx.launch'; sys.exit(main())"


def add_parser(sub) -> None:
    import argparse
    p = sub.add_parser("launch", help="Train on several processes or Macs (data parallel, via mlx.launch).",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--processes", type=int, default=None, metavar="N",
                   help="Processes per host (alone: N processes on this machine, for a test).")
    p.add_argument("--hosts", default=None, metavar="H1,H2",
                   help="SSH host names, in rank order (rank 0 first, usually this Mac); NAME=IP sets the address "
                        "the processes talk over (e.g. the Thunderbolt bridge's).")
    p.add_argument("--hostfile", default=None, metavar="FILE", help="An mlx.launch host file (JSON) to use as is.")
    p.add_argument("--backend", default="ring", help="MLX distributed backend (default ring: TCP over Ethernet, "
                                                     "Wi-Fi or a Thunderbolt bridge).")
    p.add_argument("--port", type=int, default=None, help="First TCP port of the ring (default: a free one).")
    p.add_argument("--python", default=sys.executable, help="Python on every host (default: this one; the same "
                                                            "virtual-environment path must exist on each Mac).")
    p.add_argument("--dry-run", action="store_true", help="Print the host file and the mlx.launch command; start nothing.")
    p.add_argument("--verbose", action="store_true", help="mlx.launch's own log.")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- train <the flags of raclate train>")
    p.set_defaults(run=guarded(run))


def parse_hosts(text: str | None, processes: int | None) -> list[dict]:
    """[{ssh, ips}] per process, rank order: ``-n N`` alone is N local processes."""
    from engine.errors import UsageError
    per_host = processes or 1
    if per_host < 1:
        raise UsageError(f"-n must be at least 1, got {per_host}.")
    if not text:
        if processes is None:
            raise UsageError("Say where to run: -n N (processes on this machine) or --hosts mac1,mac2.")
        return [{"ssh": LOCAL, "ips": [LOCAL]} for _ in range(per_host)]
    hosts = []
    for item in (h.strip() for h in text.split(",")):
        if not item:
            raise UsageError(f"--hosts has an empty entry: {text!r}.")
        name, _, ip = item.partition("=")
        ip = ip or resolve(name)
        hosts += [{"ssh": name, "ips": [ip]} for _ in range(per_host)]
    return hosts


def resolve(name: str) -> str:
    """An IPv4 address for ``name`` (the ring backend wants addresses, not names)."""
    from engine.errors import UsageError
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    if name in ("localhost", socket.gethostname()):
        return LOCAL
    try:
        return socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0]
    except OSError:
        raise UsageError(f"Could not find the address of host {name!r}. Give it as {name}=IP "
                       "(e.g. the Thunderbolt bridge address, System Settings → Network).") from None


def ephemeral_ports() -> tuple[int, int]:
    """The range the system draws outgoing connections' source ports from (Linux: ip_local_port_range;
    elsewhere the IANA range macOS uses)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 49152, 65535


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive TCP ports that are free here right now, below the ephemeral
    range: a rank connecting to a neighbour that is not listening yet could otherwise be given the
    neighbour's port as its own source port and connect to itself (TCP self-connect), or another
    program's outgoing connection could take the port before the rank binds it."""
    import random
    low = ephemeral_ports()[0]
    top = low - count if low - count > 20_000 else 65_535 - count   # an odd system with a low ephemeral range
    for _ in range(200):
        start = random.randrange(20_000 if top > 20_000 else 1024, top)
        held = []
        try:
            for port in range(start, start + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind((LOCAL, port))
            return start
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise OSError("no free TCP port range found")


def train_command(command: list[str], remote: bool) -> list[str]:
    """`train ...` as each process runs it: the raclate script, --distributed, an inline --config."""
    from engine.errors import UsageError
    command = list(command[1:] if command[:1] == ["--"] else command)
    if command[:1] != ["train"]:
        raise UsageError("raclate launch runs training: put `-- train <flags>` after its own options.")
    if "--distributed" not in command:
        command.append("--distributed")
    if remote:  # the other machines may not have the config file: pass its content
        for i, arg in enumerate(command):
            path = arg.split("=", 1)[1] if arg.startswith("--config=") else command[i + 1] if arg == "--config" else None
            if path and not path.lstrip().startswith("{"):
                try:
                    text = json.dumps(json.loads(Path(path).read_text()), separators=(",", ":"))
                except (OSError, ValueError) as exc:
                    raise UsageError(f"Could not read --config {path}: {exc}.") from None
                if arg == "--config":
                    command[i + 1] = text
                else:
                    command[i] = f"--config={text}"
    script = Path(sys.executable).with_name("raclate")
    return ([str(script)] if script.exists() else ["-m", "engine.cli"]) + command


def build(ns) -> tuple[list[str], dict | None]:
    """(the command line: mlx.launch's, or the train command itself for one local process; the host
    file mlx.launch reads, or None)."""
    hostfile = None
    if ns.hostfile:
        hosts_arg, remote, count = ["--hostfile", ns.hostfile], True, 0
    else:
        hosts = parse_hosts(ns.hosts, ns.processes)
        remote, count = any(h["ssh"] != LOCAL for h in hosts), len(hosts)
        if count == 1 and not remote:
            return [ns.python, *train_command(ns.command, remote=False)], None
        hostfile = {"backend": ns.backend, "envs": [], "hosts": hosts}
        hosts_arg = ["--hostfile", "<hostfile>"]
    env = ["PYTHONUNBUFFERED=1", "TOKENIZERS_PARALLELISM=false"]
    if hostfile and not remote:  # processes sharing this machine's cores: don't oversubscribe BLAS
        threads = max(1, (os.cpu_count() or 1) // count)
        env += [f"{name}={os.environ.get(name, threads)}" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")]
    port = ns.port or free_ports(max(count, 1))
    launcher = Path(sys.executable).with_name("mlx.launch")
    argv = [str(launcher)] if launcher.exists() else [sys.executable, "-c", LAUNCH_MAIN]
    argv += [*hosts_arg, "--backend", ns.backend, "--starting-port", str(port), "--python", ns.python,
             "--cwd", os.getcwd(), *[f"--env={e}" for e in env], *(["--verbose"] if ns.verbose else []),
             "--", *train_command(ns.command, remote)]
    return argv, hostfile


def run(ns) -> int:
    argv, hostfile = build(ns)
    if ns.dry_run:
        if hostfile is not None:
            print(f"# host file (written to a temporary file for a real launch)\n{json.dumps(hostfile, indent=2)}")
        print(shlex.join(argv))
        return 0
    path = None
    if hostfile is not None:
        fd, path = tempfile.mkstemp(prefix="raclate-hosts-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(hostfile, f, indent=2)
        argv[argv.index("<hostfile>")] = path
    try:
        return launch(argv)
    finally:
        if path is not None:
            os.unlink(path)   # mlx.launch has read it; a later launch writes its own


def launch(argv: list[str]) -> int:
    sys.stdout.flush()
    # The launcher ignores Ctrl+C / the app's SIGINT (it would die and drop the last events); the training
    # processes set their own handler and stop together at the next step.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1)
        codes = []
        for line in proc.stderr:   # relayed as it comes; events travel on stdout untouched
            sys.stderr.write(line)
            sys.stderr.flush()
            codes += [int(code) for _, code in RANK_EXIT.findall(line)]
        return exit_status(proc.wait(), codes)
    finally:
        signal.signal(signal.SIGINT, previous)


def exit_status(launcher_code: int, rank_codes: list[int]) -> int:
    """The first rank's failure (mlx.launch ends the others with SIGTERM after it), else the launcher's
    (or the one process's, which a signal may have ended: -N → 128+N).

    >>> exit_status(0, [2, -15]), exit_status(0, [-15, 1]), exit_status(0, [-9]), exit_status(0, [])
    (2, 1, 137, 0)
    >>> exit_status(-2, [])   # one process, ended by SIGINT
    130
    """
    failed = [c for c in rank_codes if c > 0] or [c for c in rank_codes if c < 0] or [launcher_code]
    return failed[0] if failed[0] >= 0 else 128 - failed[0]
