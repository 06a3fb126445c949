"""Upload a model folder to the Hugging Face Hub: ``create_repo`` + ``upload_folder``.

The token comes from ``HF_TOKEN`` or the token ``huggingface-cli login`` stored. ``check_push`` runs
before any work (training, export) so a missing token or a malformed repo id fails at once.
``make_api`` is the one place an ``HfApi`` is built (tests replace it with a fake).
"""
from __future__ import annotations

import os
from pathlib import Path

from engine.errors import HubError

# Never uploaded: checkpoints (optimizer state, large) and hidden temporary files.
IGNORE_PATTERNS = ["checkpoints/*", "checkpoints/**", ".*", "**/.*"]


def make_api(token: str):
    from huggingface_hub import HfApi
    return HfApi(token=token)


def find_token() -> str | None:
    """HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), else the token saved by ``huggingface-cli login``."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token
        return get_token()
    except Exception:  # noqa: BLE001 — an unreadable token file is the same as none
        return None


def check_push(repo_id: str | None) -> str:
    """The token to push with; raises :class:`HubError` (before any work is done) when pushing cannot work."""
    if not repo_id:
        raise HubError("push_to_hub is on but no repository id is given.",
                       "Pass --push-to-hub USER/NAME (e.g. --push-to-hub alice/minilm-faq).")
    try:
        from huggingface_hub.utils import validate_repo_id
        validate_repo_id(repo_id)
    except ImportError:
        pass
    except Exception as exc:  # HFValidationError
        raise HubError(f"{repo_id!r} is not a valid Hub repository id ({exc}).",
                       "Use USER/NAME or ORG/NAME: letters, digits, '-', '_' and '.'.") from None
    if repo_id.count("/") != 1:
        raise HubError(f"{repo_id!r} is not a valid Hub repository id: it needs an owner, as USER/NAME.",
                       "Use USER/NAME or ORG/NAME, e.g. --push-to-hub alice/minilm-faq.")
    token = find_token()
    if not token:
        raise HubError("No Hugging Face token found, so the model cannot be pushed to the Hub. Nothing was done.",
                       "Run `huggingface-cli login` (or `hf auth login`), or set HF_TOKEN to a token with write "
                       "access (https://huggingface.co/settings/tokens).")
    return token


def files_to_upload(folder: Path) -> list[str]:
    """Paths (relative, '/'-separated) that ``upload_folder`` sends with ``IGNORE_PATTERNS``."""
    from huggingface_hub.utils import filter_repo_objects
    folder = Path(folder)
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return list(filter_repo_objects(paths, ignore_patterns=IGNORE_PATTERNS))


def push_folder(folder, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str | None = None) -> dict:
    """Create ``repo_id`` (if needed) and upload ``folder`` (model card included, checkpoints not).
    Returns {repo_id, url, private, files}."""
    folder = Path(folder)
    token = token or check_push(repo_id)
    if not (folder / "README.md").exists():
        raise HubError(f"{folder} has no model card (README.md); refusing to push a model without one.",
                       "Export the folder again with `raclate export`, which writes the card.")
    files = files_to_upload(folder)
    api = make_api(token)
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                          ignore_patterns=IGNORE_PATTERNS,
                          commit_message=commit_message or "Upload model trained with RACLATE Tuner")
    except HubError:
        raise
    except Exception as exc:  # network, permissions, quota, ...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HubError(f"Uploading {folder} to {repo_id} failed ({type(exc).__name__}: {first}). "
                       f"The model is saved locally in {folder}.",
                       "Check the network and that the token has write access to that repository; then "
                       f"push again with `raclate export --model {folder} --to NEW_FOLDER --push-to-hub {repo_id}`.") \
            from None
    url = str(getattr(repo, "url", None) or f"https://huggingface.co/{repo_id}")
    return {"repo_id": repo_id, "url": url, "private": bool(private), "files": files}
