"""The Hugging Face token the app pushes with: HF_TOKEN or the ``huggingface-cli login`` token
(engine.outputs.hub.find_token), else one the user typed once, kept in the system keyring when the optional
``keyring`` package is installed (else only for this session). Never in the plain settings file."""
from __future__ import annotations

import os

SERVICE = "RACLATE Tuner"
ACCOUNT = "huggingface-token"
_session: dict[str, str] = {}   # a typed token when there is no keyring: until the app quits


def _keyring():
    try:
        import keyring
        keyring.get_keyring()
        return keyring
    except Exception:  # noqa: BLE001 — not installed, or no usable backend
        return None


def keyring_available() -> bool:
    return _keyring() is not None


def saved_token() -> str | None:
    ring = _keyring()
    if ring is not None:
        try:
            token = ring.get_password(SERVICE, ACCOUNT)
            if token:
                return token
        except Exception:  # noqa: BLE001 — a locked or broken keyring: as if none
            pass
    return _session.get(ACCOUNT)


def save_token(token: str, remember: bool = True) -> str:
    """Keep a typed token; returns where: "keyring" or "session"."""
    token = token.strip()
    ring = _keyring() if remember else None
    if ring is not None:
        try:
            ring.set_password(SERVICE, ACCOUNT, token)
            return "keyring"
        except Exception:  # noqa: BLE001
            pass
    _session[ACCOUNT] = token
    return "session"


def forget_token() -> None:
    _session.pop(ACCOUNT, None)
    ring = _keyring()
    if ring is not None:
        try:
            ring.delete_password(SERVICE, ACCOUNT)
        except Exception:  # noqa: BLE001 — nothing saved
            pass


def find_token() -> tuple[str | None, str]:
    """(token, where it came from, in words)."""
    from engine.outputs.hub import find_token as engine_token
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return engine_token(), "the HF_TOKEN environment variable"
    token = engine_token()
    if token:
        return token, "your Hugging Face login (huggingface-cli / hf auth login)"
    token = saved_token()
    if token:
        return token, "the system keyring" if keyring_available() else "this session"
    return None, ""


def repo_problem(repo_id: str) -> str | None:
    """Why ``repo_id`` is not a valid Hub repository id, or None (the checks of engine.outputs.hub.check_push)."""
    repo_id = repo_id.strip()
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        return "Give the repository as USER/NAME or ORG/NAME, e.g. alice/minilm-faq."
    try:
        from huggingface_hub.utils import validate_repo_id
        validate_repo_id(repo_id)
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001 — HFValidationError
        return f"{repo_id!r} is not a valid repository id ({exc})."
    return None


def offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
