-- The operators' read model of backordered orders: one row per order workflow, kept current
-- by the workflow's activities. Temporal owns the process; this table answers "what is waiting"
-- with SQL (reports, dashboards) without querying every workflow.
CREATE TABLE orders (
    order_id      text PRIMARY KEY,
    workflow_id   text NOT NULL UNIQUE,
    order_number  text NOT NULL,
    site          text NOT NULL,
    customer_id   text NOT NULL,
    customer_tier text NOT NULL,
    placed_at     timestamptz NOT NULL,
    currency      char(3) NOT NULL,
    order_value   numeric(18, 4) NOT NULL CHECK (order_value >= 0),
    status        text NOT NULL,
    skus          text[] NOT NULL,
    status_since  timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_status_placed_at ON orders (site, status, placed_at);
