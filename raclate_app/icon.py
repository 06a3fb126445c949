"""The app icon: resources/icons/raclate.svg, and a PNG rendered from it with QSvgRenderer.

`python -m raclate_app.icon` (re)writes resources/icons/raclate.png from the SVG.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap

from engine.defaults import RESOURCES_DIR   # resources/ of the checkout, or of the app bundle

ICONS_DIR = RESOURCES_DIR / "icons"
SVG = ICONS_DIR / "raclate.svg"
PNG = ICONS_DIR / "raclate.png"


def render_square(renderer, size: int) -> QImage:
    """A QSvgRenderer's picture on a transparent ``size``×``size`` image, antialiased."""
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def render_png(svg: Path = SVG, png: Path = PNG, size: int = 256) -> Path:
    from PySide6.QtSvg import QSvgRenderer
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg} is not a valid SVG file.")
    image = render_square(renderer, size)
    png.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(png)):
        raise OSError(f"Could not write {png}.")
    return png


def app_icon() -> QIcon:
    """The icon from the PNG (always loadable) plus the SVG for sharp large sizes where supported."""
    icon = QIcon()
    if PNG.exists():
        icon.addPixmap(QPixmap(str(PNG)))
    if SVG.exists():
        icon.addFile(str(SVG))
    return icon


if __name__ == "__main__":
    from PySide6.QtGui import QGuiApplication
    app = QGuiApplication(sys.argv)
    print(render_png())
