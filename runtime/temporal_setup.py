"""Preparing a Temporal namespace for the service: the namespace and our search attributes.

`backorder dev` gets both from the dev server's flags. A self-hosted cluster gets them from
`backorder setup temporal` (idempotent; run it at every deploy), the time-skipping test server
from `register_search_attributes`. Temporal Cloud namespaces are created, and their search
attributes added, in the Cloud UI or with `tcld` (the operator API is not open there).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from workflows.search_attributes import ALL, SEARCH_ATTRIBUTE_TYPES


async def register_search_attributes(client: Client, namespace: str) -> None:
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


async def missing_search_attributes(client: Client, namespace: str) -> list[str] | None:
    """`Name (Type)` of each of our search attributes the namespace lacks; None when the
    namespace does not say (an API key without the operator role). A workflow that sets a
    missing one fails its task: every order would stop, so the worker checks at start."""
    try:
        found = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            return None
        raise
    return [
        f"{key.name} ({SEARCH_ATTRIBUTE_TYPES[key.name]})"
        for key in ALL
        if key.name not in found.custom_attributes
    ]


async def setup_namespace(
    client: Client,
    namespace: str,
    retention: timedelta = timedelta(days=30),
    propagation: timedelta = timedelta(seconds=60),
) -> bool:
    """Create the namespace if missing, then register the search attributes.

    Returns whether the namespace was created. A new namespace takes a few seconds to reach
    every frontend, so registration is retried until it succeeds or `propagation` passes.
    """
    created = True
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace,
                workflow_execution_retention_period=Duration(
                    seconds=int(retention.total_seconds())
                ),
                description="backorder: one workflow per backordered order",
            )
        )
    except RPCError as err:
        if err.status is not RPCStatusCode.ALREADY_EXISTS:
            raise
        created = False
    deadline = asyncio.get_running_loop().time() + propagation.total_seconds()
    while True:
        try:
            await register_search_attributes(client, namespace)
            return created
        except RPCError as err:
            retryable = err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.UNAVAILABLE)
            if not retryable or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(1)
