-- Backorder limits: how much of a sku one customer may have waiting, and how much may wait at a
-- site in all. An order claims its room at acceptance, under a lock per (site, sku), so two
-- orders accepted at the same moment cannot both take the last of it; the claim is held here
-- until the order's demand rows are written (in the same transaction the claim is deleted:
-- from then on the demand rows themselves are what waits). A claim of 0 units is kept too: a
-- retried acceptance gets the answer the first one got.
CREATE TABLE backorder_allowances (
    order_id    text NOT NULL,
    sku         text NOT NULL,
    site        text NOT NULL,
    customer_id text NOT NULL,
    units       integer NOT NULL CHECK (units >= 0),
    reason      text NOT NULL DEFAULT '',
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, sku)
);

CREATE INDEX backorder_allowances_by_sku ON backorder_allowances (site, sku);

-- A customer's waiting units of a sku: demand joined to the read model's customer.
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id);
