"""Writing files so that nothing is ever half-written: each file goes to a temporary name in the
same folder and is renamed into place; folders are swapped by rename, and an output folder is locked
while a run writes it. Ground floor: imports nothing of the engine."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock, Timeout

# Inside a locked folder; it stays after the run (the lock is a flock on it, which the kernel drops when
# its process dies, so a killed run leaves no stale lock) and holds the pid of its last holder.
LOCK_FILE = ".raclate.lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path`` (same folder, so the rename is atomic).
    The file gets the umask's permissions, like any file the user creates (mkstemp makes 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the suffix: mx.save_safetensors appends ".safetensors" otherwise.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: Path, obj) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
    atomic_write(path, write)


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; {} when it is missing, unreadable or not an object."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def sibling(path: Path, tag: str) -> Path:
    """A hidden, unique name beside ``path`` (same folder, so a rename between them is atomic)."""
    path = Path(path)
    return path.parent / f".{path.name}.{tag}-{os.getpid()}-{os.urandom(3).hex()}"


def swap_folder(new: Path, target: Path) -> None:
    """Put the finished folder ``new`` at ``target`` by rename. An existing ``target`` is moved aside
    first and removed only once ``new`` is in place, so a failure at any point leaves one of the two
    whole at ``target``. Callers decide beforehand whether ``target`` may be replaced."""
    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = sibling(target, "old")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies below it (links resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def folder_size(path: Path) -> int:
    """Bytes in the files below ``path`` (0 when it is gone)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def lock_folder(folder: Path) -> FileLock | None:
    """Hold ``folder``'s lock (the folder must exist): the held lock, or None when another process
    holds it. The pid goes into the lock file, for ``lock_holder``; ``release()`` when done."""
    lock = FileLock(Path(folder) / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    Path(lock.lock_file).write_text(f"{os.getpid()}\n")
    return lock


def lock_holder(folder: Path) -> str | None:
    """"pid 1234" when another process holds ``folder``'s lock, else None. Never creates the lock file."""
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return None
    try:
        probe = FileLock(path)
        probe.acquire(timeout=0)
    except Timeout:
        try:
            pid = path.read_text().strip()
        except OSError:
            pid = ""
        return f"pid {pid}" if pid.isdigit() else "another process"
    except OSError:
        return None   # cannot be opened for writing (a read-only folder): nothing writes there either
    probe.release()
    return None
