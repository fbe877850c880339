"""Signals other apps listen to; `customers` itself never imports them (dependencies point
one way: segments -> customers).
"""

from django.dispatch import Signal

#: Sent after the per-customer metrics were recomputed, inside the transaction that wrote the
#: purchases (so receivers that start work must defer it with `transaction.on_commit`).
#: Arguments: `customer_ids` (a frozenset of ids) or, for a whole-merchant refresh,
#: `customer_ids=None` and `merchant_id`.
customers_changed = Signal()
