-- What `backorder report` needs beyond each order's current status: when every order went on
-- backorder and when it left (fill time, daily new / released / cancelled), and what each line
-- costs (the value of the units still waiting, per sku). All of it is written by the
-- `record_order` activity in the transaction that upserts the order's row.

-- Every status an order has had, append-only: one row per status the workflow recorded, keyed
-- so that a retried or replayed record adds nothing. A late retry of an older status still
-- adds its row: it happened, even though `orders` keeps the newer status.
CREATE TABLE order_status_history (
    order_id     text NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    status       text NOT NULL,
    status_since timestamptz NOT NULL,  -- the workflow's time of the change
    inferred     boolean NOT NULL DEFAULT false,
    cancel_reason text,  -- why, on a `cancelled` row (the workflow's reason; NULL: not sent)
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, status, status_since)
);

COMMENT ON COLUMN order_status_history.inferred IS
    'true: reconstructed by 0010 for an order recorded before the history was kept (its current '
    'status, its "on backorder" notice, its first purchase-order promise); false: written by '
    'record_order.';

-- The earliest history row in either waiting status, kept on the order's row: when the order
-- went on backorder. The report reads it for every order of a period (new backorders, the backorder
-- rate, fill time), which a lookup into the history per order would make slow at 100k orders.
ALTER TABLE orders ADD COLUMN backordered_at timestamptz;

COMMENT ON COLUMN orders.backordered_at IS
    'When the order went on backorder: its earliest order_status_history row as backordered '
    'or awaiting_receipt (kept by record_order). NULL: it never did.';

-- The order's lines as accepted (an order never changes once accepted): what a waiting unit is
-- worth. Orders recorded before 0010 get theirs at their next record; until then their waiting
-- value is unknown (the report says how many).
CREATE TABLE order_lines (
    order_id   text NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    line_id    text NOT NULL,
    sku        text NOT NULL,
    quantity   integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(18, 4) NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, line_id)
);

-- The report's periods: orders placed, gone on backorder and ended in it (a completed or
-- cancelled order's status is final, so its status_since is when it ended), FTC notices sent
-- in it; and per order, the skus that waited: its "on backorder" notice and its
-- purchase-order promises (kept after the units arrive: receipt_id).
CREATE INDEX orders_placed ON orders (site, placed_at);
CREATE INDEX orders_backordered ON orders (site, backordered_at)
    WHERE backordered_at IS NOT NULL;
CREATE INDEX orders_ended ON orders (site, status_since)
    WHERE status IN ('completed', 'cancelled');
CREATE INDEX notices_ftc ON notices (created_at)
    WHERE kind IN ('ftc_delay_option', 'ftc_renewed_notice');
CREATE INDEX notices_on_backorder ON notices (order_id) WHERE kind = 'on_backorder';
CREATE INDEX reservations_promised_by_order ON reservations (order_id)
    WHERE receipt_id IS NOT NULL;

-- The orders recorded before 0010, as far as the tables already tell:
-- 1. the status each order has now, since when;
INSERT INTO order_status_history (order_id, status, status_since, inferred)
SELECT order_id, status, status_since, true FROM orders;

-- 2. backordered at acceptance: the only time the "on backorder" notice is sent is when
--    acceptance left units waiting for stock;
INSERT INTO order_status_history (order_id, status, status_since, inferred)
SELECT n.order_id, 'backordered', min(n.created_at), true
  FROM notices n
  JOIN orders o ON o.order_id = n.order_id
 WHERE n.kind = 'on_backorder'
 GROUP BY n.order_id
ON CONFLICT DO NOTHING;

-- 3. otherwise awaiting receipt at acceptance: units only come to wait on a purchase order
--    after waiting for stock, unless acceptance promised them from one at once.
INSERT INTO order_status_history (order_id, status, status_since, inferred)
SELECT r.order_id, 'awaiting_receipt', min(r.created_at), true
  FROM reservations r
  JOIN orders o ON o.order_id = r.order_id
 WHERE r.receipt_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM notices n
                    WHERE n.order_id = r.order_id AND n.kind = 'on_backorder')
 GROUP BY r.order_id
ON CONFLICT DO NOTHING;

-- 4. and so when each went on backorder.
UPDATE orders o
   SET backordered_at = h.first
  FROM (SELECT order_id, min(status_since) AS first
          FROM order_status_history
         WHERE status IN ('backordered', 'awaiting_receipt')
         GROUP BY order_id) h
 WHERE h.order_id = o.order_id;
