"""Uploaded files waiting between the preview (a dry run) and the confirmation, under
`var/imports/<token>/`."""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from django.conf import settings

from customers.imports.cells import MSG_UNKNOWN_FILE
from customers.imports.specs import FILE_ORDER

_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def upload_root() -> Path:
    """Where uploads wait between the preview and the confirmation (`var/imports/`)."""
    root = getattr(settings, "IMPORT_UPLOAD_ROOT", None)
    return Path(root) if root else Path(settings.BASE_DIR) / "var" / "imports"


def upload_store(files: Mapping[str, IO[bytes]]) -> str:
    """Save uploaded contract files under a new random token; returns the token."""
    token = secrets.token_urlsafe(24)
    directory = upload_root() / token
    directory.mkdir(parents=True)
    for kind, upload in files.items():
        if kind not in FILE_ORDER:
            raise ValueError(MSG_UNKNOWN_FILE.format(name=kind, expected=", ".join(FILE_ORDER)))
        with open(directory / f"{kind}.csv", "wb") as out:
            chunks = getattr(upload, "chunks", None)
            if chunks is not None:
                for chunk in chunks():
                    out.write(chunk)
            else:
                shutil.copyfileobj(upload, out)
    return token


def upload_paths(token: str) -> dict[str, Path]:
    """The stored files of an upload, by contract name (empty when the token is unknown)."""
    if not _TOKEN_RE.fullmatch(token):
        return {}
    directory = upload_root() / token
    return {
        kind: directory / f"{kind}.csv"
        for kind in FILE_ORDER
        if (directory / f"{kind}.csv").is_file()
    }


def upload_discard(token: str) -> None:
    """Delete an upload's files (after the import, or when it is cancelled)."""
    if _TOKEN_RE.fullmatch(token):
        shutil.rmtree(upload_root() / token, ignore_errors=True)
