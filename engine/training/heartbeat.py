"""Heartbeats between the ranks of a distributed run, on a side channel of their own.

A rank that dies, hangs or fails could leave the others blocked in an ``all_sum`` (the ring backend
notices a closed socket, but not a frozen process, a sleeping Mac or a pulled cable). So every rank
keeps one TCP connection to rank 0 (a star), served by a daemon thread that runs while the main
thread is inside MLX (which releases the GIL):

- each side sends ``hb`` every ``interval_s``; silence for ``timeout_s`` means the peer is lost;
- a connection that closes without ``bye`` means the peer's process ended (noticed at once);
- a rank that fails sends ``err <message>`` first, so the others can say why.

Rank 0 picks a free port and hands it to the others with a broadcast (one collective at start);
a random token keeps strangers off the port. On loss the thread calls ``on_lost(message)``.
"""
from __future__ import annotations

import json
import secrets
import selectors
import socket
import threading
import time


class Heartbeat:
    def __init__(self, rank: int, size: int, timeout_s: float, on_lost, interval_s: float = 0.5):
        self.rank, self.size = rank, size
        self.timeout_s, self.interval_s = max(float(timeout_s), 2 * interval_s), interval_s
        self.on_lost = on_lost
        self.peers: dict[int, socket.socket] = {}       # rank -> connection (rank 0: all others; else: {0: ...})
        self.last_seen: dict[int, float] = {}
        self._buffers: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.enabled = False

    # -- set-up (collective) ----------------------------------------------------------------------
    def start(self, world, address: str | None) -> None:
        """Connect every rank to rank 0. Without an address for rank 0 (e.g. MPI) there is no
        heartbeat; the backend's own error on a closed connection still ends the run."""
        import mlx.core as mx
        listener, token = None, 0
        if self.rank == 0 and address:
            listener = _listen(address)
            token = secrets.randbits(31)
        port = listener.getsockname()[1] if listener else 0
        port, token = world.broadcast(mx.array([port, token], dtype=mx.int64)).tolist()
        if not port:
            return
        deadline = time.monotonic() + max(30.0, self.timeout_s)
        if self.rank == 0:
            listener.settimeout(1.0)
            while len(self.peers) < self.size - 1 and time.monotonic() < deadline:
                try:
                    conn, _ = listener.accept()
                except socket.timeout:
                    continue
                peer = _hello(conn, token)
                if peer is not None and 0 < peer < self.size:
                    self.peers[peer] = conn
                else:
                    conn.close()
            listener.close()
        else:
            conn = _connect(address, port, deadline)
            if conn is not None:
                conn.sendall(f"hello {self.rank} {token}\n".encode())
                self.peers[0] = conn
        now = time.monotonic()
        self.last_seen = {peer: now for peer in self.peers}
        self._buffers = {peer: b"" for peer in self.peers}
        missing = sorted(set(range(self.size)) - {self.rank} - set(self.peers)) if self.rank == 0 else \
            ([] if self.peers else [0])
        self.enabled = True
        self._thread = threading.Thread(target=self._run, name="raclate-heartbeat", daemon=True)
        self._thread.start()
        if missing:
            self.on_lost(f"Rank(s) {', '.join(map(str, missing))} could not reach rank 0's heartbeat port "
                         f"({address}:{port}); check that the firewall lets the launcher's Python accept connections.")

    # -- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for peer, conn in self.peers.items():
            conn.setblocking(False)
            sel.register(conn, selectors.EVENT_READ, peer)
        next_beat = 0.0
        while not self._closing.is_set() and self.peers:
            now = time.monotonic()
            if now >= next_beat:
                self._send_all(b"hb\n")
                next_beat = now + self.interval_s
            for key, _ in sel.select(timeout=self.interval_s / 2):
                self._receive(key.data, sel)
            now = time.monotonic()
            for peer, seen in list(self.last_seen.items()):
                if peer in self.peers and now - seen > self.timeout_s:
                    self._drop(peer, sel)
                    self._lost(f"No heartbeat from rank {peer} for {self.timeout_s:.0f} s: its machine may be "
                               "asleep or unreachable, or its process frozen. The run was stopped.")
        sel.close()

    def _receive(self, peer: int, sel) -> None:
        conn = self.peers.get(peer)
        if conn is None:
            return
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(peer, sel)
            self._lost(f"Rank {peer}'s process ended without finishing (killed, crashed or out of memory); "
                       "the run was stopped.")
            return
        self.last_seen[peer] = time.monotonic()
        lines = (self._buffers.get(peer, b"") + data).split(b"\n")
        self._buffers[peer] = lines.pop()
        for line in lines:
            word, _, rest = line.decode("utf-8", "replace").partition(" ")
            if word == "bye":
                self._drop(peer, sel)
                return
            if word == "err":
                try:
                    message = json.loads(rest)
                except ValueError:
                    message = rest
                self._drop(peer, sel)
                prefix = "" if str(message).startswith("Rank ") else f"Rank {peer} failed: "
                self._lost(prefix + str(message))
                return

    def _drop(self, peer: int, sel) -> None:
        conn = self.peers.pop(peer, None)
        if conn is not None:
            try:
                sel.unregister(conn)
            except (KeyError, ValueError):
                pass
            conn.close()

    def _lost(self, message: str) -> None:
        if not self._closing.is_set():
            self.on_lost(message)

    def _send_all(self, payload: bytes) -> None:
        with self._lock:
            for conn in list(self.peers.values()):
                try:
                    conn.sendall(payload)
                except (BlockingIOError, OSError):
                    pass   # a full or closed socket shows up as silence or EOF on the reading side

    # -- called from the main thread ----------------------------------------------------------------
    def report_failure(self, message: str) -> None:
        self._send_all(f"err {json.dumps(message)}\n".encode())

    def close(self, goodbye: bool = True) -> None:
        if goodbye:
            self._send_all(b"bye\n")
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval_s)
        with self._lock:
            for conn in self.peers.values():
                try:
                    conn.close()
                except OSError:
                    pass
            self.peers.clear()


def _listen(address: str) -> socket.socket:
    for host in (address, "0.0.0.0"):
        try:
            listener = socket.create_server((host, 0), backlog=64)
            return listener
        except OSError:
            continue
    raise OSError(f"could not open a heartbeat port on {address}")


def _hello(conn: socket.socket, token: int) -> int | None:
    conn.settimeout(5.0)
    try:
        line = b""
        while not line.endswith(b"\n") and len(line) < 200:
            chunk = conn.recv(200)
            if not chunk:
                return None
            line += chunk
        word, rank, got = line.split(b"\n")[0].decode().split()  # heartbeats may follow in the same read
        return int(rank) if word == "hello" and int(got) == token else None
    except (OSError, ValueError):
        return None


def _connect(address: str, port: int, deadline: float) -> socket.socket | None:
    while time.monotonic() < deadline:
        try:
            return socket.create_connection((address, port), timeout=5.0)
        except OSError:
            time.sleep(0.2)
    return None
