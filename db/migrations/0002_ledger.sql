-- The inventory ledger: what the planner may hand out, what orders hold, and what they wait for.
-- Invariants live here, not only in Python: stock never goes negative and reserved never exceeds
-- what there is. The activities lock the rows they change (SELECT ... FOR UPDATE, always stock
-- rows by (sku, location) first, then receipts by receipt_id) so that concurrent orders queue
-- instead of deadlocking, and these CHECKs catch anything that slips past them.

-- The product switches the planner reads (domain Product). A sku without a row gets the
-- catalog's defaults, so stock and demand deliberately do not reference this table.
CREATE TABLE products (
    sku              text PRIMARY KEY,
    backorderable    boolean NOT NULL DEFAULT true,
    future_inventory boolean NOT NULL DEFAULT true,
    is_insert        boolean NOT NULL DEFAULT false,  -- a packing insert ("insert" is SQL)
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Stores and warehouses: rank orders ship-to-home sourcing (lower first); pickup says whether
-- customers may collect BOPIS orders there.
CREATE TABLE locations (
    location_id text PRIMARY KEY,
    rank        integer NOT NULL DEFAULT 0 CHECK (rank >= 0),
    pickup      boolean NOT NULL DEFAULT false
);

-- Units physically at a location and the part of them promised to orders; free = on_hand -
-- reserved. The CHECKs make over-reserving impossible whatever the code does.
CREATE TABLE stock (
    sku        text NOT NULL,
    location   text NOT NULL REFERENCES locations (location_id),
    on_hand    integer NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved   integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, location),
    CONSTRAINT stock_reserved_within_on_hand CHECK (reserved <= on_hand)
);

-- Incoming units (purchase orders, transfers) that release passes may promise when the site
-- allows future inventory; reserved counts the units already promised to orders.
CREATE TABLE future_receipts (
    receipt_id    text PRIMARY KEY,
    sku           text NOT NULL,
    location      text NOT NULL REFERENCES locations (location_id),
    quantity      integer NOT NULL CHECK (quantity > 0),
    reserved      integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    expected_date date,  -- unknown: the units exist but cannot be promised for a date
    status        text NOT NULL DEFAULT 'open'
                  CHECK (status IN ('open', 'received', 'cancelled')),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT future_receipts_reserved_within_quantity CHECK (reserved <= quantity),
    UNIQUE (receipt_id, sku, location)  -- target of reservations' composite foreign key
);

CREATE INDEX future_receipts_open_by_sku ON future_receipts (sku, location)
    WHERE status = 'open';

-- Who holds which units: one row per reserved (or released) piece of an order line, so a
-- release frees exactly what that order reserved and stock.reserved can be reconciled.
-- A partial release splits a row: the released part becomes a row of its own.
CREATE TABLE reservations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key          text NOT NULL,  -- the reserve_stock call that made it
    order_id     text NOT NULL,
    line_id      text NOT NULL,
    sku          text NOT NULL,
    location     text NOT NULL REFERENCES locations (location_id),
    quantity     integer NOT NULL CHECK (quantity > 0),
    source       text NOT NULL CHECK (source IN ('current', 'future')),
    receipt_id   text,
    state        text NOT NULL DEFAULT 'reserved' CHECK (state IN ('reserved', 'released')),
    released_key text,  -- the release_stock call that freed it
    created_at   timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz,
    CONSTRAINT reservations_receipt_iff_future
        CHECK ((source = 'future') = (receipt_id IS NOT NULL)),
    CONSTRAINT reservations_released_has_time_and_key
        CHECK ((state = 'released') = (released_at IS NOT NULL AND released_key IS NOT NULL)),
    FOREIGN KEY (receipt_id, sku, location)
        REFERENCES future_receipts (receipt_id, sku, location)
);

CREATE INDEX reservations_held ON reservations (order_id, line_id, sku, location)
    WHERE state = 'reserved';
CREATE INDEX reservations_by_receipt ON reservations (receipt_id)
    WHERE receipt_id IS NOT NULL AND state = 'reserved';

-- The demand index: every open backordered line, kept by the order workflow's activities, so
-- the allocator finds who waits for a sku (and in what priority: tier, placed_at, order_id)
-- without asking every workflow. Order-level fields repeat on each line of the order.
CREATE TABLE demand (
    order_id         text NOT NULL,
    line_id          text NOT NULL,
    sku              text NOT NULL,
    quantity_open    integer NOT NULL CHECK (quantity_open > 0),
    tier             text NOT NULL,
    placed_at        timestamptz NOT NULL,
    fulfillment_type text NOT NULL CHECK (fulfillment_type IN ('sth', 'bopis')),
    pickup_location  text,
    shipments        integer NOT NULL DEFAULT 0 CHECK (shipments >= 0),
    release_in_full  boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, line_id),
    CONSTRAINT demand_bopis_has_pickup
        CHECK (fulfillment_type <> 'bopis' OR pickup_location IS NOT NULL)
);

CREATE INDEX demand_by_sku ON demand (sku, placed_at);

-- Requests to re-check one order (the workflow's periodic safety net); the allocator consumes
-- the unhandled ones and stamps handled_at.
CREATE TABLE allocation_requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     text NOT NULL,
    reason       text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    handled_at   timestamptz
);

CREATE INDEX allocation_requests_pending ON allocation_requests (requested_at)
    WHERE handled_at IS NULL;

-- Idempotency of the ledger activities: a key recorded here was applied, in the same
-- transaction as its effect, so a retried or replayed call changes nothing.
CREATE TABLE ledger_operations (
    key      text PRIMARY KEY,
    kind     text NOT NULL,  -- the activity name: a key reused by another activity is an error
    order_id text NOT NULL,
    done_at  timestamptz NOT NULL DEFAULT now()
);

-- Idempotency of the inventory feed (receipts arriving, counts, shipments): an event applied
-- once is never applied again.
CREATE TABLE inventory_events (
    event_id   text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
