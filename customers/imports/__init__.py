"""The CSV import of a merchant's data (contract: `shared/spec/import-format.md`, version 1).

One service, `import_files()`, serves both `manage.py import_data` and the upload page. The
package reads top to bottom as an import runs: `cells` (one cell's converter), `specs` (the
contract's files and columns), `staging` (temporary tables), `reading` (a file streamed and
staged row by row), `checks` (duplicates and references, in SQL), `merge` (staging into the
merchant's tables, then metrics), `service` (`import_files`, one durable transaction),
`uploads` (files waiting between preview and confirmation), `report` (what it did).

How it works, and why:

1. Each file is streamed (never read whole), row by row; every cell is validated in Python
   and the typed row is staged, with its physical line number, into a TEMPORARY table in
   batches (PostgreSQL: `COPY ... FROM STDIN`; SQLite: `executemany`). Memory therefore
   does not grow with file size: no Python structure holds one entry per row.
2. Duplicate keys and references (customer, transaction, product, branch) are checked by
   SQL over the staging tables and the merchant's stored rows, so the line numbers of
   offending rows come back without a dictionary of millions of keys in Python.
3. When everything is valid, set-based statements merge staging into the real tables:
   `UPDATE ... FROM` for existing keys, only where `(old) IS DISTINCT FROM (new)` (SQLite:
   `IS NOT` on row values), then `INSERT ... SELECT ... WHERE NOT EXISTS` for new keys. An
   unchanged row is never rewritten, so importing the same files twice changes nothing.
4. Per-customer metrics are recomputed for the customers touched (the whole merchant when
   many), inside the same transaction, so readers never see rows without their metrics.

Everything runs in one `transaction.atomic()`: when any row is bad, or on a dry run, the
block is rolled back and nothing is written (tags and tiers created while reading included).

Rules that the contract leaves open, decided here (and documented in docs/import.md):

- An empty cell in an optional column means "not given": a new row takes the default, an
  existing row keeps its stored value. Booleans: empty is false for a new row.
- Items have no key: the lines of a transaction in the items file REPLACE that transaction's
  stored line items as a set (multiset). A transaction whose lines are the same is left
  alone; a transaction absent from the items file keeps its lines.
- A non-empty `tags` cell replaces the customer's tag set (`;` alone clears it); tags match
  existing ones case-insensitively, new ones are created with the spelling first seen.
  `tier` matches by name case-insensitively and is created (rank 0) when new.
"""

from customers.imports.report import MAX_ERRORS, FileCounts, ImportIssue, ImportReport
from customers.imports.samples import SAMPLES
from customers.imports.service import import_files
from customers.imports.specs import CONTRACT_COLUMNS, FILE_ORDER, SPECS
from customers.imports.uploads import upload_discard, upload_paths, upload_root, upload_store

__all__ = [
    "CONTRACT_COLUMNS",
    "FILE_ORDER",
    "MAX_ERRORS",
    "SAMPLES",
    "SPECS",
    "FileCounts",
    "ImportIssue",
    "ImportReport",
    "import_files",
    "upload_discard",
    "upload_paths",
    "upload_root",
    "upload_store",
]
