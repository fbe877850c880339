"""Writes of the segments app, by concern: every function here is keyword-only and the one
way to change its rows, so the invariants hold whoever calls (views, the admin, tasks,
commands, the coming API):

- `definitions`: a change of a segment's definition (name, description, rules) bumps
  `definition_version` and writes a `SegmentVersion` in the same transaction; removing goes
  through the removal plan (`segments.selectors.segment_removal_plan`).
- `refresh`: a full refresh computes the difference between the compiled rules and the
  current membership in SQL, in one transaction under the segment's lock; a refresh that
  started from an older version discards its work ("superseded"), a failed one rolls back
  (the old membership stays) and records the error.
- `incremental`: a few customers changed; their memberships follow, evaluated in Python.
- `manual`: members picked or uploaded by hand.
- `schedule`, `statistics`: when a segment is refreshed next; its stored statistics and
  daily sizes.
- `common`: who did it, the segment's lock, membership rows and their events (every entry
  and exit writes a `MembershipEvent`, and `member_count` follows the rows).
- `seams`: the rule engine as the services see it (tests replace these to test the writes
  alone).

Work that must not run inside the caller's transaction is enqueued with
`transaction.on_commit(lambda: task.delay(id), robust=True)`. This package re-exports the
public functions, so callers write `services.segment_create(...)`.
"""

from segments.selectors import IN_USE_ERROR
from segments.services.common import (
    ID_BATCH,
    MembershipChange,
    id_batches,
)
from segments.services.definitions import (
    COPY_NAME,
    DEFINITION_FIELDS,
    MANUAL_RULES_ERROR,
    SLUG_TAKEN_ERROR,
    UNKNOWN_FIELDS_ERROR,
    UPDATABLE_FIELDS,
    SegmentInUseError,
    segment_create,
    segment_duplicate,
    segment_restore_version,
    segment_update,
    segments_remove,
    segments_set_active,
)
from segments.services.incremental import segment_memberships_update_for_customers
from segments.services.manual import (
    NOT_MANUAL_ERROR,
    OTHER_MERCHANT_ERROR,
    UPLOAD_ENCODING_ERROR,
    UPLOAD_HEADER_ERROR,
    UPLOAD_MAX_ERRORS,
    UPLOAD_MORE_ERRORS,
    UPLOAD_UNKNOWN_ERROR,
    MembershipUploadError,
    segment_members_add,
    segment_members_remove,
    segment_members_replace,
    segment_members_upload,
)
from segments.services.ready_made import segments_add_ready_made
from segments.services.refresh import (
    REFRESH_TABLE,
    RefreshResult,
    merchant_segments_refresh,
    refresh_in_order,
    segment_refresh,
    segments_queue_refresh,
    segments_reading,
    segments_refresh_due,
)
from segments.services.schedule import segment_next_refresh_at
from segments.services.statistics import segment_snapshot_sizes, segment_stats_refresh

__all__ = [
    "COPY_NAME",
    "DEFINITION_FIELDS",
    "ID_BATCH",
    "IN_USE_ERROR",
    "MANUAL_RULES_ERROR",
    "NOT_MANUAL_ERROR",
    "OTHER_MERCHANT_ERROR",
    "READY_MADE_FAMILIES",
    "REFRESH_TABLE",
    "SLUG_TAKEN_ERROR",
    "UNKNOWN_FIELDS_ERROR",
    "UPDATABLE_FIELDS",
    "UPLOAD_ENCODING_ERROR",
    "UPLOAD_HEADER_ERROR",
    "UPLOAD_MAX_ERRORS",
    "UPLOAD_MORE_ERRORS",
    "UPLOAD_UNKNOWN_ERROR",
    "MembershipChange",
    "MembershipUploadError",
    "RefreshResult",
    "SegmentInUseError",
    "id_batches",
    "merchant_segments_refresh",
    "ready_made_segments",
    "refresh_in_order",
    "segment_create",
    "segment_duplicate",
    "segment_members_add",
    "segment_members_remove",
    "segment_members_replace",
    "segment_members_upload",
    "segment_memberships_update_for_customers",
    "segment_next_refresh_at",
    "segment_refresh",
    "segment_restore_version",
    "segment_snapshot_sizes",
    "segment_stats_refresh",
    "segment_update",
    "segments_add_ready_made",
    "segments_queue_refresh",
    "segments_reading",
    "segments_refresh_due",
    "segments_remove",
    "segments_set_active",
]
