"""Custom search attributes: how operators find backorders in the Temporal UI and CLI.

`backorder dev` registers them; on a real cluster register them once with
`temporal operator search-attribute create --name <Name> --type <Type>` (see README).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from temporalio.common import SearchAttributeKey

BACKORDER_STATUS = SearchAttributeKey.for_keyword("BackorderStatus")
BACKORDER_SKUS = SearchAttributeKey.for_keyword_list("BackorderSkus")
BACKORDER_SINCE = SearchAttributeKey.for_datetime("BackorderSince")
CUSTOMER_TIER = SearchAttributeKey.for_keyword("CustomerTier")
ORDER_VALUE = SearchAttributeKey.for_float("OrderValue")
FTC_STATE = SearchAttributeKey.for_keyword("FtcState")
OPEN_EXCEPTIONS = SearchAttributeKey.for_int("OpenExceptions")
"""Exceptions open for the order on the operators' queue, at the workflow's latest news of it
(an order that ended keeps the count it ended with: `backorder exceptions` reads the queue)."""

ALL: tuple[SearchAttributeKey[Any], ...] = (
    BACKORDER_STATUS,
    BACKORDER_SKUS,
    BACKORDER_SINCE,
    CUSTOMER_TIER,
    ORDER_VALUE,
    FTC_STATE,
    OPEN_EXCEPTIONS,
)

SEARCH_ATTRIBUTE_TYPES: dict[str, str] = {
    key.name: key.indexed_value_type.name.title().replace("_", "") for key in ALL
}
"""Name -> type as the Temporal CLI spells it (`--search-attribute OrderValue=Double`)."""

VALUE_SIZE_LIMIT = 2048
"""Bytes one search attribute value may take (Temporal's `limit.searchAttributeValueSize`
default, on the dev server and clusters alike); a larger value terminates the workflow task."""


VALUE_BUDGET = VALUE_SIZE_LIMIT - 248
"""What the JSON of one value may take: the limit counts the payload's metadata too."""


def bounded_keywords(values: Sequence[str], limit: int = VALUE_BUDGET) -> list[str]:
    """A keyword list that fits in `limit` bytes as Temporal stores it (a JSON array): as many
    values as fit, in order, then a marker `+N more` for the rest."""

    def size(kept: list[str]) -> int:
        return len(json.dumps(kept, ensure_ascii=False).encode())

    if size(list(values)) <= limit:
        return list(values)
    kept: list[str] = []
    for value in values:
        rest = len(values) - len(kept) - 1
        if size([*kept, value, f"+{rest} more"]) > limit:
            break
        kept.append(value)
    return [*kept, f"+{len(values) - len(kept)} more"]
