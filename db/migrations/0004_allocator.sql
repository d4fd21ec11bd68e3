-- The allocator: inventory events applied once, allocation passes recorded with what they
-- handed out, and the allotment signals each pass owes to order workflows (an outbox, so a
-- crash between the pass and its signals loses nothing).

-- Demand is per site: each site's allocator serves its own orders (under its own policy) from
-- the shared stock, whose row locks keep two sites' passes from promising the same units.
ALTER TABLE demand ADD COLUMN site text NOT NULL DEFAULT 'default';
DROP INDEX demand_by_sku;
CREATE INDEX demand_by_site_sku ON demand (site, sku);

-- A received future receipt's reservations become reservations of stock on hand; they keep
-- the receipt_id they came from, so a current reservation may name one.
ALTER TABLE reservations DROP CONSTRAINT reservations_receipt_iff_future;
ALTER TABLE reservations ADD CONSTRAINT reservations_future_names_receipt
    CHECK (source = 'current' OR receipt_id IS NOT NULL);
CREATE INDEX reservations_by_receipt_any ON reservations (receipt_id, order_id)
    WHERE receipt_id IS NOT NULL AND state = 'reserved';

-- Order workflows now signal the allocator directly (check_now, self-checks).
DROP TABLE allocation_requests;

-- The feed's audit trail: every applied event once, with its payload and the pass that
-- applied it. A rejected event is not recorded, so its sender may fix it and send it again.
ALTER TABLE inventory_events
    ADD COLUMN kind text NOT NULL DEFAULT 'unknown',
    ADD COLUMN payload jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN pass_id text;

-- Stock movements, for reconciling stock with the feed: one row per change of on_hand.
CREATE TABLE stock_movements (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   text NOT NULL REFERENCES inventory_events (event_id),
    sku        text NOT NULL,
    location   text NOT NULL REFERENCES locations (location_id),
    delta      integer NOT NULL CHECK (delta <> 0),
    reason     text NOT NULL,
    moved_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX stock_movements_by_stock ON stock_movements (sku, location, moved_at);

-- One row per allocation pass: a retried pass returns its recorded report instead of
-- planning again.
CREATE TABLE allocation_passes (
    pass_id     text PRIMARY KEY,
    site        text NOT NULL,
    reason      text NOT NULL,
    report      jsonb NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);

-- The allotment signal each pass owes an order: written in the pass's transaction, delivered
-- after it commits. `outcome` is null until delivered (or until the order turned out gone and
-- its stock was released).
CREATE TABLE allotment_deliveries (
    pass_id      text NOT NULL REFERENCES allocation_passes (pass_id),
    order_id     text NOT NULL,
    signal       jsonb NOT NULL,
    outcome      text CHECK (outcome IN ('delivered', 'gone')),
    delivered_at timestamptz,
    PRIMARY KEY (pass_id, order_id),
    CONSTRAINT allotment_deliveries_outcome_has_time
        CHECK ((outcome IS NULL) = (delivered_at IS NULL))
);

CREATE INDEX allotment_deliveries_pending ON allotment_deliveries (pass_id)
    WHERE outcome IS NULL;
