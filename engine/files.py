"""Writing files so that nothing is ever half-written: each file goes to a temporary name in the
same folder and is renamed into place. Ground floor: imports nothing of the engine."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


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
    import shutil
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
