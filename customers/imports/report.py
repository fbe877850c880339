"""What an import did: counts per file, and the errors with their file, line and column."""

from __future__ import annotations

from dataclasses import dataclass, field

#: At most this many errors are reported (the rest are counted, not listed).
MAX_ERRORS = 50


@dataclass(frozen=True)
class ImportIssue:
    """One error: where it is (file, physical line, column) and what is wrong."""

    file: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.message}"


@dataclass
class FileCounts:
    """What one file did. For `items`: `updated` is the transactions whose lines were
    replaced, `unchanged` the transactions whose lines were already the same, and
    `lines_written` the line items inserted; `created` stays 0."""

    file: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    lines_written: int = 0

    @property
    def is_items(self) -> bool:
        return self.file == "items"

    def summary(self) -> str:
        if self.is_items:
            return (
                f"{self.file}: {self.rows} rows read, {self.updated} transactions replaced, "
                f"{self.unchanged} unchanged, {self.lines_written} lines written"
            )
        return (
            f"{self.file}: {self.rows} rows read, {self.created} created, "
            f"{self.updated} updated, {self.unchanged} unchanged"
        )


@dataclass
class ImportReport:
    """The outcome of `import_files()`. `ok` is False when any error was found, in which
    case nothing was written; `dry_run` imports roll back even when `ok`."""

    dry_run: bool
    counts: dict[str, FileCounts] = field(default_factory=dict)
    errors: list[ImportIssue] = field(default_factory=list)
    #: True when more errors existed than the MAX_ERRORS reported.
    truncated: bool = False
    tags_created: int = 0
    tiers_created: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def written(self) -> bool:
        return self.ok and not self.dry_run
