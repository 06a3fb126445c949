"""Write the macOS app icon (.icns) from resources/icons/raclate.svg, with no Apple tools.

`python packaging/make_icns.py OUT.icns` — packaging/raclate.spec runs it at build time on macOS,
so no binary icon is committed. An .icns file is the magic ``icns``, the file's length, then
blocks of (4-byte type, 4-byte length including these 8 bytes, data); since macOS 10.7 the data
of the types below may be a whole PNG file. Each size is rendered from the SVG with QtSvg (the
PNG in resources/ when the SVG cannot be rendered), so it stays sharp at 1024 px.
"""
from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# type → pixel size (the @2x types hold the doubled size of their point size)
ICNS_TYPES = {"icp4": 16, "icp5": 32, "icp6": 64, "ic07": 128, "ic08": 256, "ic09": 512, "ic10": 1024,
              "ic11": 32, "ic12": 64, "ic13": 256, "ic14": 512}


def icns_bytes(pngs: dict[str, bytes]) -> bytes:
    """An .icns file from {type: PNG bytes}."""
    blocks = b"".join(kind.encode("ascii") + struct.pack(">I", len(data) + 8) + data for kind, data in pngs.items())
    return b"icns" + struct.pack(">I", len(blocks) + 8) + blocks


def read_icns(data: bytes) -> dict[str, bytes]:
    """{type: data} of an .icns file (checks the structure; used by the tests)."""
    if data[:4] != b"icns" or struct.unpack(">I", data[4:8])[0] != len(data):
        raise ValueError("not an .icns file")
    blocks, at = {}, 8
    while at < len(data):
        kind, size = data[at:at + 4].decode("ascii"), struct.unpack(">I", data[at + 4:at + 8])[0]
        if size < 8 or at + size > len(data):
            raise ValueError(f"bad block {kind!r} at {at}")
        blocks[kind] = data[at + 8:at + size]
        at += size
    return blocks


def render_pngs(svg: Path, fallback_png: Path) -> dict[str, bytes]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage
    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # noqa: F841  (QtGui needs one)
    sys.path.insert(0, str(ROOT))  # run as a script from the spec: the checkout's app package
    from raclate_app.icon import render_square
    try:
        from PySide6.QtSvg import QSvgRenderer
        renderer = QSvgRenderer(str(svg))
        valid = renderer.isValid()
    except ImportError:
        valid = False
    source = None if valid else QImage(str(fallback_png))
    out = {}
    for kind, size in ICNS_TYPES.items():
        if valid:
            image = render_square(renderer, size)
        else:
            image = source.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                  Qt.TransformationMode.SmoothTransformation)
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        buffer.close()
        out[kind] = bytes(data.data())
    return out


def write_icns(out: Path, svg: Path = ROOT / "resources/icons/raclate.svg",
               png: Path = ROOT / "resources/icons/raclate.png") -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(icns_bytes(render_pngs(svg, png)))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python packaging/make_icns.py OUT.icns")
    print(write_icns(Path(sys.argv[1])))
