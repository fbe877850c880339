"""Signals other apps listen to; `customers` itself never imports them (dependencies point
one way: segments -> customers).
"""

from django.dispatch import Signal

#: Sent by the write chain (`customers.services`) after the per-customer metrics were
#: recomputed, inside the transaction that wrote the purchases (so receivers that start work
#: must defer it with `transaction.on_commit`), once per merchant. Arguments: `merchant_id`,
#: and `customer_ids`: a frozenset of the ids that changed, or None for a merchant-level
#: change (many customers at once: `customers.services.CHANGE_BATCH_MAX`). `fields`, when
#: sent: only these customer columns changed (a bulk update of columns nothing else is
#: derived from, e.g. a campaign's `last_contacted_at`), so only the segments that read them
#: need to follow; absent or None: anything may have changed.
customers_changed = Signal()

#: Sent by the score service inside the transaction that wrote `ScoreChange` rows (a
#: computation, or a purchase that moved customers), once per write. Arguments:
#: `merchant_id`, `changed_at` (every row of this write has it), `kinds`: the
#: `ScoreChangeKind` values written. Receivers read the rows back by these three.
score_changes_recorded = Signal()

#: Sent by `customers.imports.service.import_files` inside its transaction once a CSV import
#: is written (not for a dry run or a refused import). Arguments: `merchant_id`, `report`
#: (the `ImportReport`: counts per file, tags and tiers created).
import_completed = Signal()
