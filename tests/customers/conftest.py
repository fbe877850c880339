"""Helpers for the import tests: contract CSV files written into a temporary directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.apps import apps

from customers.imports import ImportReport, import_files

CsvWriter = Callable[..., Path]


@pytest.fixture
def write_csv(tmp_path: Path) -> CsvWriter:
    """write_csv("customers", "external_id,joined_at", "C1,2024-01-01T10:00") -> path.

    Lines are joined with newlines; the file is named `<name>.csv` like the contract's.
    """

    def write(name: str, *lines: str, encoding: str = "utf-8", bom: bool = False) -> Path:
        path = tmp_path / f"{name}.csv"
        data = "\n".join(lines) + "\n"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode(encoding))
        return path

    return write


@pytest.fixture
def run_import(merchant) -> Callable[..., ImportReport]:
    """import_files() for the `merchant` fixture: run_import(customers=path, dry_run=False)."""

    def run(dry_run: bool = False, **files: Path) -> ImportReport:
        return import_files(merchant=merchant, files=files, dry_run=dry_run)

    return run


@pytest.fixture
def table_counts() -> Callable[[], dict[str, int]]:
    """The row count of every table of the customers app (to prove nothing was written)."""

    def counts() -> dict[str, int]:
        return {
            model.__name__: model._default_manager.count()
            for model in apps.get_app_config("customers").get_models()
        }

    return counts


@pytest.fixture(autouse=True)
def _upload_root(settings, tmp_path: Path) -> None:
    settings.IMPORT_UPLOAD_ROOT = tmp_path / "uploads"
