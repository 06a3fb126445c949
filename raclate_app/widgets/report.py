"""ReportView: the validation report (counts, problems, warnings) with clickable example rows."""
from __future__ import annotations

from html import escape

from PySide6.QtCore import QUrl, Signal
from PySide6.QtWidgets import QTextBrowser

from raclate_app import theme

MAX_FINDINGS = 30


class ReportView(QTextBrowser):
    row_clicked = Signal(object, int, str)   # file (or None), row/line number, split

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self.on_anchor_clicked)
        self.findings = []
        self.setMinimumHeight(120)

    def show_message(self, text: str) -> None:
        self.findings = []
        self.setHtml(f"<p style='color:{theme.hex_of(theme.muted_text())}'>{escape(text)}</p>")

    def show_report(self, report, *, checking: bool | str = False, notes: list[str] = ()) -> None:
        """``checking``: a check is under way (a text: what it checks)."""
        ok, tight, over, muted, info = (theme.hex_of(theme.status_color(k)) for k in ("ok", "tight", "over", "unknown",
                                                                                      "info"))
        self.findings = list(report.findings)[:MAX_FINDINGS]
        parts = []
        if checking:
            text = checking if isinstance(checking, str) else "Checking the data again …"
            parts.append(f"<p style='color:{muted}'>{escape(text)}</p>")
        counts = " · ".join(f"{split} <b>{n:,}</b> rows" for split, n in report.num_rows.items())
        fatal, warnings = len(report.fatal), len(report.warnings)
        if not report.findings:
            head = f"<span style='color:{ok}'>✓ No problems found.</span>"
        else:
            bits = []
            if fatal:
                bits.append(f"<span style='color:{over}'>✗ {fatal} problem{'s' if fatal != 1 else ''} to fix</span>")
            if warnings:
                bits.append(f"<span style='color:{tight}'>⚠ {warnings} warning{'s' if warnings != 1 else ''}</span>")
            head = " &nbsp; ".join(bits)
        parts.append(f"<p style='margin:0'><b>{head}</b></p>")
        if counts:
            parts.append(f"<p style='margin:2px 0 6px 0'>{counts}</p>")
        for note in notes:
            parts.append(f"<p style='color:{tight}'>⚠ {escape(note)}</p>")
        for i, f in enumerate(self.findings):
            color, mark = (over, "✗") if f.severity == "fatal" else (tight, "⚠")
            where = f" <span style='color:{muted}'>({escape(f.split)})</span>" if f.split and f.split != "train" else ""
            column = f" — column <b>{escape(str(f.column))}</b>" if f.column else ""
            parts.append(f"<p style='margin:8px 0 0 0'><span style='color:{color}'><b>{mark}</b></span> "
                         f"{escape(f.message)}{column}{where}</p>")
            if f.fix:
                parts.append(f"<p style='margin:0 0 0 16px'>Fix: {escape(f.fix)}</p>")
            if f.examples:
                links = " ".join(f"<a href='row:{i}:{j}' style='color:{info}'>{f.row_label} {n}</a>"
                                 for j, n in enumerate(f.examples))
                more = f" (+{f.count - len(f.examples):,} more)" if f.count > len(f.examples) else ""
                parts.append(f"<p style='margin:0 0 0 16px'>{links}{more}</p>")
        if len(report.findings) > MAX_FINDINGS:
            parts.append(f"<p style='color:{muted}'>… and {len(report.findings) - MAX_FINDINGS} more.</p>")
        parts += _length_summary(report, muted)
        self.setHtml("".join(parts))

    def on_anchor_clicked(self, url: QUrl) -> None:
        kind, _, rest = url.toString().partition(":")
        if kind != "row":
            return
        i, j = (int(x) for x in rest.split(":"))
        finding = self.findings[i]
        self.row_clicked.emit(finding.file, int(finding.examples[j]), finding.split or "train")


def _length_summary(report, muted: str) -> list[str]:
    hist = report.length_histogram
    out = []
    if hist:
        over = report.truncated_rows
        out.append(f"<p style='color:{muted}; margin-top:8px'>Tokens per text: mean {hist['mean']:.0f}, "
                   f"longest {hist['max']}; {over:,} row{'s' if over != 1 else ''} over the max length of "
                   f"{report.max_length}.</p>")
    if report.label_counts:
        shown = ", ".join(f"{escape(str(k))} {v:,}" for k, v in list(report.label_counts.items())[:12])
        out.append(f"<p style='color:{muted}'>Classes in train: {shown}</p>")
    return out
