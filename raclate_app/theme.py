"""Colours that follow the system palette: role tints for the preview, status colours, plot pens.
Nothing here hard-codes a background; each colour has a light-palette and a dark-palette variant."""
from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

ROLE_HUES = {"text": 212, "text_pair": 140, "negative": 355, "label": 35, "tokens": 270, "labels": 180}
STATUS = {"ok": ("#15803d", "#4ade80"), "tight": ("#b45309", "#fbbf24"), "over": ("#b91c1c", "#f87171"),
          "unknown": ("#57534e", "#a8a29e"), "info": ("#1d4ed8", "#93c5fd")}
CURVES = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0891b2", "#db2777", "#65a30d")


def palette() -> QPalette:
    return QApplication.palette()


def is_dark(pal: QPalette | None = None) -> bool:
    pal = pal or palette()
    return pal.color(QPalette.ColorRole.Base).lightness() < 128


def role_color(role: str | None, pal: QPalette | None = None) -> QColor | None:
    """A tint for cells of a mapped column: pastel on light palettes, deep on dark ones, so the
    palette's own text colour stays readable on it. None for unmapped columns."""
    if role is None:
        return None
    hue = ROLE_HUES.get("negative" if role.startswith("negative") else role)
    if hue is None:
        return None
    return QColor.fromHsl(hue, 110, 62) if is_dark(pal) else QColor.fromHsl(hue, 200, 222)


def role_swatch(role: str | None, pal: QPalette | None = None) -> QColor | None:
    """A stronger variant of the role colour for small swatches and header marks."""
    if role is None:
        return None
    hue = ROLE_HUES.get("negative" if role.startswith("negative") else role)
    if hue is None:
        return None
    return QColor.fromHsl(hue, 170, 140) if is_dark(pal) else QColor.fromHsl(hue, 190, 120)


def status_color(level: str, pal: QPalette | None = None) -> QColor:
    light, dark = STATUS.get(level, STATUS["unknown"])
    return QColor(dark if is_dark(pal) else light)


def curve_color(i: int, pal: QPalette | None = None) -> str:
    """Plot pen colours: the base set on light backgrounds, lightened on dark ones."""
    color = QColor(CURVES[i % len(CURVES)])
    return hex_of(color.lighter(150) if is_dark(pal) else color)


def hex_of(color: QColor) -> str:
    return color.name(QColor.NameFormat.HexRgb)


def muted_text(pal: QPalette | None = None) -> QColor:
    pal = pal or palette()
    return pal.color(QPalette.ColorGroup.Active, QPalette.ColorRole.PlaceholderText)
