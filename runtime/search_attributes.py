"""Registering our custom search attributes on a Temporal namespace.

`backorder dev` registers them through the dev server's flags; a self-hosted cluster (or the
time-skipping test server) gets them through the operator API with `register`. Temporal Cloud
namespaces take them from `tcld`/the Cloud UI instead (the operator API is not open there).
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from workflows.search_attributes import ALL


async def register(client: Client, namespace: str) -> None:
    """Add every custom search attribute; ones that already exist are left as they are."""
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={
                    key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL
                },
            )
        )
    except RPCError as err:
        if err.status is not RPCStatusCode.ALREADY_EXISTS:
            raise
