"""The macOS bundle's identity and Info.plist (packaging/raclate.spec; tests/test_packaging.py)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "RACLATE Tuner"
BUNDLE_ID = "io.github.raclate.tuner"
MINIMUM_MACOS = "14.0"
# (type name, UTI, extensions): what Finder offers to open with the app / lets drop on its Dock icon.
DOCUMENT_TYPES = [
    ("CSV table", "public.comma-separated-values-text", ["csv"]),
    ("TSV table", "public.tab-separated-values-text", ["tsv"]),
    ("JSON Lines data", "org.jsonlines.jsonl", ["jsonl"]),
    ("JSON data", "public.json", ["json"]),
    ("Parquet table", "org.apache.parquet", ["parquet"]),
]
# UTIs macOS does not declare itself: (UTI, description, extensions, conforms to)
IMPORTED_TYPES = [
    ("org.jsonlines.jsonl", "JSON Lines data", ["jsonl"], ["public.text", "public.data"]),
    ("org.apache.parquet", "Apache Parquet table", ["parquet"], ["public.data"]),
]


def project_version(pyproject: Path = ROOT / "pyproject.toml") -> str:
    return re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M).group(1)


def info_plist(version: str | None = None) -> dict:
    """Keys PyInstaller's BUNDLE merges into Info.plist (it adds CFBundleExecutable, icon, id)."""
    version = version or project_version()
    return {
        "CFBundleName": APP_NAME,
        "CFBundleDisplayName": APP_NAME,
        "CFBundleIdentifier": BUNDLE_ID,
        "CFBundleShortVersionString": version,
        "CFBundleVersion": version,
        "NSHighResolutionCapable": True,
        "LSMinimumSystemVersion": MINIMUM_MACOS,
        "NSRequiresAquaSystemAppearance": False,   # follow dark mode
        "LSApplicationCategoryType": "public.app-category.developer-tools",
        "NSHumanReadableCopyright": "Apache-2.0",
        # Files dropped on the Dock icon or opened with "Open With" arrive as QFileOpenEvent
        # (raclate_app/main.py) and open on the Data page.
        "CFBundleDocumentTypes": [
            {"CFBundleTypeName": name, "CFBundleTypeRole": "Viewer", "LSHandlerRank": "Alternate",
             "LSItemContentTypes": [uti], "CFBundleTypeExtensions": extensions}
            for name, uti, extensions in DOCUMENT_TYPES],
        "UTImportedTypeDeclarations": [
            {"UTTypeIdentifier": uti, "UTTypeDescription": description, "UTTypeConformsTo": conforms,
             "UTTypeTagSpecification": {"public.filename-extension": extensions}}
            for uti, description, extensions, conforms in IMPORTED_TYPES],
    }
