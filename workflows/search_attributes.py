"""Custom search attributes: how operators find backorders in the Temporal UI and CLI.

`backorder dev` registers them; on a real cluster register them once with
`temporal operator search-attribute create --name <Name> --type <Type>` (see README).
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

BACKORDER_STATUS = SearchAttributeKey.for_keyword("BackorderStatus")
BACKORDER_SKUS = SearchAttributeKey.for_keyword_list("BackorderSkus")
BACKORDER_SINCE = SearchAttributeKey.for_datetime("BackorderSince")
CUSTOMER_TIER = SearchAttributeKey.for_keyword("CustomerTier")
ORDER_VALUE = SearchAttributeKey.for_float("OrderValue")
FTC_STATE = SearchAttributeKey.for_keyword("FtcState")

ALL: tuple[SearchAttributeKey[Any], ...] = (
    BACKORDER_STATUS,
    BACKORDER_SKUS,
    BACKORDER_SINCE,
    CUSTOMER_TIER,
    ORDER_VALUE,
    FTC_STATE,
)

SEARCH_ATTRIBUTE_TYPES: dict[str, str] = {
    key.name: key.indexed_value_type.name.title().replace("_", "") for key in ALL
}
"""Name -> type as the Temporal CLI spells it (`--search-attribute OrderValue=Double`)."""
