"""DimChoice: the embedding size the Evaluate and Playground pages use a dense model at — its full size,
or the first values of each vector (Matryoshka dims its run trained, else plain truncations)."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from raclate_app.evaluation import Dims


class DimChoice(QWidget):
    dim_changed = Signal(object)   # int | None (None: the full size); the user's choices only

    def __init__(self, parent=None):
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setToolTip("Use only the first values of each embedding (re-normalised): smaller vectors, "
                              "faster search. Models trained with Matryoshka dims keep most of their quality.")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Dimensions"))
        layout.addWidget(self.combo)
        self.combo.currentIndexChanged.connect(lambda _: self.dim_changed.emit(self.dim()))
        self.set_dims(None)

    def set_dims(self, dims: Dims | None) -> None:
        """Offer ``dims`` (hidden when None: not a dense embedding model, or its size is unknown); the
        full size is selected."""
        self.combo.blockSignals(True)
        self.combo.clear()
        if dims is not None:
            self.combo.addItem(f"Full ({dims.full})", None)
            for d in dims.dims:
                self.combo.addItem(f"{d} (Matryoshka)" if dims.matryoshka else f"{d} (1/{dims.full // d})", d)
        self.combo.blockSignals(False)
        self.setVisible(dims is not None and bool(dims.dims))

    def dim(self) -> int | None:
        return self.combo.currentData()   # None for the full size and when nothing is offered
