"""The order workflow's patch ids, in one place with what each changed.

Each id is recorded in the histories of the runs that took the new path, so it must never be
renamed or dropped while such a run may still replay (tests/histories hold examples).
"""

from temporalio import workflow

NUDGE_WHEN_FREED = "nudge-allocator-when-stock-is-freed"
"""Patch: releasing stock asks the allocator to hand it on, and a refused allotment re-syncs
the demand index (histories recorded before this change replay without those calls)."""
REFUND_NOTICE = "confirm-refunds-to-the-customer"
"""A refund (payment at order) is confirmed by its own `refunded` notice after `cancelled`."""
SETTLE_UNDER_LOCK = "settle-under-the-lock"
"""Patch: the order's end runs under the lock after the inbox is drained (a cancel_order still
voiding finishes first, stock allotted meanwhile goes back), and messages that arrive while it
ends are answered before it returns."""
CLAIM_ORDER_ID = "claim-the-order-id"
"""Patch: before acceptance the workflow id is checked and the order id claimed in PostgreSQL,
so an order is accepted once whatever the entry point."""
FTC_FROM_PLACED_AT = "ftc-clock-from-placed-at"
"""Patch: the FTC deadline runs from `placed_at` (and allows for credit applications)."""
RECEIPT_NEWS_PER_SHIPMENT = "receipt-news-per-shipment"
"""Patch: a receipt's arrival counts for the shipments waiting on it when the news came, not
for ones promised later from the rest of a purchase order received in parts, and each pass's
receipt news has steps of its own (the same receipt may arrive in several parts)."""
ANSWER_EVERY_MESSAGE = "answer-every-message"
"""Patch: a customer-service signal that cannot be applied (unreadable, unknown name, refused:
nothing to consent to, unknown tier...) is recorded and raised to the exception queue, and a
priority change to an unknown tier is refused (before: logged, dropped or applied)."""
STRICT_CONTRACT = "strict-order-contract"
"""Patch: an order the exact contract refuses (currency, money as a number, quantity as a
string), decoded leniently, fails its start with InvalidInput (before: accepted)."""
OPEN_EXCEPTIONS_NEWS = "open-exceptions-news"
"""Patch: the `exceptions_changed` signal (what is open for the order on the operators' queue)
sets the `OpenExceptions` search attribute and the details' exceptions section (before: an
unknown signal, refused on the record)."""
LEAN_HISTORY = "lean-history"
"""Patch: acceptance's reads and claim run first as local activities (a marker each, in the
workflow task that asked); a transition's writes (shipments, demand, notices, read model) wait
for its end and commit as one `apply_order_effects` step, after its payments; search attributes
are upserted only when they change; and every patch above is taken without being asked
(`patched`). Before: a regular activity per step and an upsert per publication."""


LEAN_HISTORY_2 = "lean-history-2"
"""Patch, the second generation of lean runs. A shipment's capture waits for the transition's
write step and is made in it, after the commit (`apply_order_effects` reports each capture's
outcome, which the workflow records as it recorded `capture_payment`'s): a release is one
activity, not two. The order's timer is kept across wake-ups and set again only when its
instant changes (before: started for every wait, cancelled by every message). A run that took
it is lean (every patch above is taken without asking). Runs that took `lean-history` keep
their ways: having asked for this one while replaying, they never take it."""


def lean() -> bool:
    """Whether the run is lean (`lean-history` or a later generation). A run started since asks
    for the newest generation only: one marker, however many generations there are."""
    return workflow.patched(LEAN_HISTORY_2) or workflow.patched(LEAN_HISTORY)


def patched(patch_id: str) -> bool:
    """`workflow.patched` for the order's patches. A lean run (every run started since
    `lean-history`) takes every earlier patch's new path without asking: asking records a
    marker and an upsert of `TemporalChangeVersion`, two history events per patch per run. A
    run started before asks as it always did, so its history replays."""
    return lean() or workflow.patched(patch_id)
