"""ModelSeesView: "What the model sees" for one preview row — the exact rendered input (prompts,
chat template, special tokens, truncation) and its tokens, from the engine's ``render``."""
from __future__ import annotations

from html import escape

from PySide6.QtWidgets import QTextBrowser

from raclate_app import theme

MAX_TOKENS = 400


class ModelSeesView(QTextBrowser):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.rendered: dict | None = None
        self.show_message("Select a row of the preview to see exactly what the model reads.")

    def show_message(self, text: str) -> None:
        self.rendered = None
        self.setHtml(f"<p style='color:{theme.hex_of(theme.muted_text())}'>{escape(text)}</p>")

    def show_rendered(self, rendered: dict, row_label: str, titles: dict[str, str], tokenizer=None) -> None:
        self.rendered = rendered
        muted = theme.hex_of(theme.muted_text())
        special = set(getattr(tokenizer, "all_special_tokens", []) or [])
        parts = [f"<p style='margin:0 0 4px 0; color:{muted}'>{escape(row_label)}</p>"]
        labels = rendered.get("labels")
        for item in rendered["inputs"]:
            role = item["role"]
            tint = theme.hex_of(theme.role_color(role) or theme.palette().alternateBase().color())
            cut = (f" <span style='color:{theme.hex_of(theme.status_color('tight'))}'>· truncated to max length</span>"
                   if item.get("truncated") else "")
            parts.append(f"<p style='margin:8px 0 2px 0'><b>{escape(titles.get(role, role))}</b> "
                         f"<span style='color:{muted}'>· {item['num_tokens']} tokens</span>{cut}</p>")
            parts.append(f"<p style='margin:0; font-family:monospace'>{escape(item['text'])}</p>")
            chips = []
            for k, token in enumerate(item["tokens"][:MAX_TOKENS]):
                is_special = token in special
                bg = theme.hex_of(theme.palette().alternateBase().color()) if is_special else tint
                tag = ""
                if labels is not None and k < len(labels) and labels[k] not in (-100, None):
                    tag = f"<sub> {escape(str(labels[k]))}</sub>"
                style = f"background:{bg};" + (f" color:{muted};" if is_special else "")
                chips.append(f"<span style='{style}'>&nbsp;{escape(token)}&nbsp;</span>{tag}")
            more = f" <span style='color:{muted}'>… {len(item['tokens']) - MAX_TOKENS} more</span>" \
                if len(item["tokens"]) > MAX_TOKENS else ""
            parts.append(f"<p style='margin:2px 0 0 0; line-height:150%; font-family:monospace'>{' '.join(chips)}{more}</p>")
        self.setHtml("".join(parts))
