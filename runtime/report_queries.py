"""The SQL behind `backorder report`: every KPI aggregated in PostgreSQL, from the read model
(`orders`, `order_lines`), the ledger (`demand`, `reservations`, `future_receipts`) and the
notice outbox, never from Temporal. Two statements: the backlog now, and the period; each
returns one row of JSON documents, so what several KPIs share is computed once.

An order is *on backorder* while its status is `backordered` (units wait for stock) or
`awaiting_receipt` (units wait in future shipments for a purchase order). It *went on backorder*
at `orders.backordered_at`, its first history row in either status, and *ended* when it became
`completed` (filled) or `cancelled` (nothing shipped): both are final, so its `status_since` is
when it ended.

Parameters: `site`; the period as `start` and `end` (UTC midnights, end exclusive) and as
`since` and `until` (its first and last day); `as_of` (now); `horizon` (the last day a purchase
order may be due and count as expected soon); `buckets` (the age buckets' first days);
`by_sku` (whether to compute the per-sku documents at all).
"""

from __future__ import annotations

from psycopg import sql

BACKLOG = sql.SQL("""
WITH current AS MATERIALIZED (  -- the site's orders on backorder, and whole days on it so far
    SELECT o.order_id, o.currency,           -- (placed_at: a row without a recorded start)
           greatest(floor(date_part('epoch', %(as_of)s - coalesce(o.backordered_at,
                                                                  o.placed_at)) / 86400),
                    0)::int AS age_days
      FROM orders o
     WHERE o.site = %(site)s AND o.status IN ('backordered', 'awaiting_receipt')
),
free_soon AS (  -- units of purchase orders due by the horizon that no order was promised yet
    SELECT sku, sum(quantity - reserved) AS free
      FROM future_receipts
     WHERE status = 'open' AND expected_date <= %(horizon)s
     GROUP BY sku
),
queue AS (  -- every site's waiting lines of those skus, first placed first, with running units
    SELECT d.order_id, d.line_id, d.quantity_open, f.free,
           sum(d.quantity_open) OVER (PARTITION BY d.sku
                                      ORDER BY d.placed_at, d.order_id, d.line_id) AS through
      FROM demand d
      JOIN free_soon f ON f.sku = d.sku
),
units AS MATERIALIZED (  -- what each line still waits for, how much of it is due by the
                         -- horizon, and its price (NULL: the order's lines were not recorded)
    SELECT w.*, (SELECT l.unit_price  -- a lookup per line: a join would hash every line
                   FROM order_lines l
                  WHERE l.order_id = w.order_id AND l.line_id = w.line_id) AS unit_price
      FROM (
          SELECT d.order_id, d.line_id, d.sku, d.quantity_open AS units,
                 coalesce(greatest(least(q.quantity_open,
                                         q.free - (q.through - q.quantity_open)), 0), 0)
                     AS expected
            FROM demand d
            JOIN current c ON c.order_id = d.order_id
            LEFT JOIN queue q ON q.order_id = d.order_id AND q.line_id = d.line_id
          UNION ALL
          SELECT r.order_id, r.line_id, r.sku, r.quantity,
                 CASE WHEN f.status = 'open' AND f.expected_date <= %(horizon)s
                      THEN r.quantity ELSE 0 END
            FROM reservations r
            JOIN current c ON c.order_id = r.order_id
            JOIN future_receipts f ON f.receipt_id = r.receipt_id
           WHERE r.source = 'future' AND r.state = 'reserved'
      ) w
),
per_order AS (
    SELECT c.order_id, c.age_days,
           coalesce(sum(u.units), 0) AS units, coalesce(sum(u.expected), 0) AS expected,
           coalesce(bool_or(u.unit_price IS NULL), false) AS unpriced
      FROM current c
      LEFT JOIN units u ON u.order_id = c.order_id
     GROUP BY c.order_id, c.age_days
),
per_sku_order AS (
    SELECT u.sku, u.order_id, c.age_days, sum(u.units) AS units, sum(u.expected) AS expected,
           bool_or(u.unit_price IS NULL) AS unpriced
      FROM units u
      JOIN current c ON c.order_id = u.order_id
     GROUP BY u.sku, u.order_id, c.age_days
)
SELECT
    (SELECT row_to_json(t) FROM (
         SELECT count(*) AS orders, coalesce(sum(units), 0) AS units,
                coalesce(sum(expected), 0) AS expected_units,
                count(*) FILTER (WHERE units > 0 AND expected = units) AS expected_orders,
                count(*) FILTER (WHERE unpriced) AS unpriced_orders,
                max(age_days) AS oldest_days
           FROM per_order) t
    ) AS backlog,
    (SELECT coalesce(json_agg(t ORDER BY t.sku NULLS FIRST, t.currency), '[]') FROM (
         -- never adds two currencies: per currency (sku NULL), and per sku and currency
         SELECT CASE WHEN grouping(u.sku) = 0 THEN u.sku END AS sku, c.currency,
                sum(u.units * u.unit_price)::text AS amount
           FROM units u
           JOIN current c ON c.order_id = u.order_id
          WHERE u.unit_price IS NOT NULL
          GROUP BY GROUPING SETS ((c.currency), (u.sku, c.currency))) t
    ) AS amounts,
    (SELECT coalesce(json_agg(t), '[]') FROM (
         SELECT width_bucket(age_days, %(buckets)s::int[]) AS bucket, count(*) AS orders
           FROM current
          GROUP BY 1) t
    ) AS ages,
    CASE WHEN %(by_sku)s THEN (SELECT coalesce(json_agg(t ORDER BY t.sku), '[]') FROM (
         SELECT sku, count(*) AS orders, sum(units) AS units, sum(expected) AS expected_units,
                count(*) FILTER (WHERE expected = units) AS expected_orders,
                count(*) FILTER (WHERE unpriced) AS unpriced_orders,
                max(age_days) AS oldest_days
           FROM per_sku_order
          GROUP BY sku) t)
    END AS backlog_by_sku
""")
"""The backlog now (whatever the period): `backlog` (one document), `amounts`, `ages` (orders
per age bucket, numbered from 1) and `backlog_by_sku` (the skus the orders wait for)."""

PERIOD = sql.SQL("""
WITH placed AS MATERIALIZED (  -- the site's orders placed in the period
    SELECT o.order_id, o.skus,
           o.backordered_at IS NOT NULL
               OR o.status IN ('backordered', 'awaiting_receipt') AS went
      FROM orders o
     WHERE o.site = %(site)s AND o.placed_at >= %(start)s AND o.placed_at < %(end)s
),
ended AS MATERIALIZED (  -- its backorders that ended in the period, their days on backorder
                         -- and, when cancelled, the reason the workflow recorded
    SELECT o.order_id, o.status, o.status_since AS ended_at,
           greatest(date_part('epoch', o.status_since - o.backordered_at), 0) / 86400 AS days,
           h.cancel_reason
      FROM orders o
      LEFT JOIN order_status_history h
        ON h.order_id = o.order_id AND h.status = o.status AND h.status_since = o.status_since
     WHERE o.site = %(site)s AND o.status IN ('completed', 'cancelled')
       AND o.status_since >= %(start)s AND o.status_since < %(end)s
       AND o.backordered_at IS NOT NULL
),
last_ftc AS (  -- each order's latest FTC notice, and when the rule cancels unless it consents
    SELECT DISTINCT ON (order_id) order_id, (payload ->> 'respond_by')::timestamptz AS respond_by
      FROM notices
     WHERE kind IN ('ftc_delay_option', 'ftc_renewed_notice')
     ORDER BY order_id, created_at DESC, key DESC
),
by_rule AS MATERIALIZED (  -- ended by the rule: units cancelled once that time had come (the
                           -- rule cancels then; only a consent moves it, and that is rare)
    SELECT e.order_id
      FROM ended e
      JOIN last_ftc f ON f.order_id = e.order_id AND f.respond_by <= e.ended_at
     WHERE EXISTS (SELECT 1 FROM notices c
                    WHERE c.order_id = e.order_id AND c.kind = 'cancelled'
                      AND c.key NOT LIKE '%%/accept/cancelled')
),
these AS (  -- the orders whose skus the per-sku figures need
    SELECT order_id FROM placed WHERE went
    UNION
    SELECT order_id FROM ended
),
short AS MATERIALIZED (  -- (order, sku) of those that waited: in the acceptance's "on
                         -- backorder" notice, promised from a purchase order (receipt_id stays
                         -- when the units come), or in the demand index now
    SELECT DISTINCT order_id, sku
      FROM (SELECT n.order_id, i.item ->> 'sku' AS sku
              FROM notices n
              JOIN these t ON t.order_id = n.order_id
             CROSS JOIN LATERAL jsonb_array_elements(n.payload -> 'items') AS i (item)
             WHERE n.kind = 'on_backorder'
            UNION ALL
            SELECT r.order_id, r.sku
              FROM reservations r
              JOIN these t ON t.order_id = r.order_id
             WHERE r.receipt_id IS NOT NULL
            UNION ALL
            SELECT d.order_id, d.sku
              FROM demand d
              JOIN these t ON t.order_id = d.order_id) waited
)
SELECT
    (SELECT row_to_json(t) FROM (
         SELECT count(*) AS placed, count(*) FILTER (WHERE went) AS backordered
           FROM placed) t
    ) AS placed,
    (SELECT row_to_json(t) FROM (
         SELECT count(*) FILTER (WHERE e.status = 'completed') AS filled,
                avg(e.days) FILTER (WHERE e.status = 'completed') AS fill_mean,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY e.days)
                    FILTER (WHERE e.status = 'completed') AS fill_p90,
                count(*) AS ended,
                count(*) FILTER (WHERE e.status = 'cancelled') AS cancelled,
                count(*) FILTER (WHERE e.status = 'cancelled' AND r.order_id IS NOT NULL)
                    AS cancelled_by_rule,
                count(r.order_id) AS ended_by_rule
           FROM ended e
           LEFT JOIN by_rule r ON r.order_id = e.order_id) t
    ) AS ended,
    (SELECT coalesce(json_agg(t ORDER BY t.orders DESC, t.reason), '[]') FROM (
         -- the recorded reason's first clause ("FTC rule: not shipped by ..." is "FTC rule");
         -- none recorded (an order cancelled before reasons were): the rule's, or not recorded
         SELECT coalesce(left(nullif(trim(split_part(e.cancel_reason, ':', 1)), ''), 80),
                         CASE WHEN r.order_id IS NOT NULL THEN %(ftc_reason)s
                              ELSE %(unrecorded)s END) AS reason,
                count(*) AS orders
           FROM ended e
           LEFT JOIN by_rule r ON r.order_id = e.order_id
          WHERE e.status = 'cancelled'
          GROUP BY 1) t
    ) AS reasons,
    (SELECT coalesce(json_agg(t ORDER BY t.days), '[]') FROM (
         SELECT floor(days)::int AS days, count(*) AS orders
           FROM ended
          WHERE status = 'completed'
          GROUP BY 1) t
    ) AS fill_days,
    (SELECT json_agg(t ORDER BY t.day) FROM (
         SELECT d.day::date AS day, coalesce(s.new, 0) AS new,
                coalesce(c.released, 0) AS released, coalesce(c.cancelled, 0) AS cancelled
           FROM generate_series(%(since)s::date, %(until)s::date, interval '1 day') AS d (day)
           LEFT JOIN (
               SELECT (o.backordered_at AT TIME ZONE 'UTC')::date AS day, count(*) AS new
                 FROM orders o
                WHERE o.site = %(site)s
                  AND o.backordered_at >= %(start)s AND o.backordered_at < %(end)s
                GROUP BY 1
           ) s ON s.day = d.day::date
           LEFT JOIN (
               SELECT (ended_at AT TIME ZONE 'UTC')::date AS day,
                      count(*) FILTER (WHERE status = 'completed') AS released,
                      count(*) FILTER (WHERE status = 'cancelled') AS cancelled
                 FROM ended
                GROUP BY 1
           ) c ON c.day = d.day::date) t
    ) AS daily,
    (SELECT row_to_json(t) FROM (
         SELECT count(*) FILTER (WHERE n.kind = 'ftc_delay_option') AS delay_notices,
                count(*) FILTER (WHERE n.kind = 'ftc_renewed_notice') AS renewed_notices
           FROM notices n
           JOIN orders o ON o.order_id = n.order_id
          WHERE o.site = %(site)s
            AND n.kind IN ('ftc_delay_option', 'ftc_renewed_notice')
            AND n.created_at >= %(start)s AND n.created_at < %(end)s) t
    ) AS ftc,
    CASE WHEN %(by_sku)s THEN (SELECT coalesce(json_agg(t), '[]') FROM (
         SELECT p.sku, count(*) AS placed, count(s.order_id) AS backordered
           FROM (SELECT order_id, unnest(skus) AS sku FROM placed) p  -- each sku once
           LEFT JOIN short s ON s.order_id = p.order_id AND s.sku = p.sku
          GROUP BY p.sku) t)
    END AS placed_by_sku,
    CASE WHEN %(by_sku)s THEN (SELECT coalesce(json_agg(t), '[]') FROM (
         SELECT s.sku,
                count(*) FILTER (WHERE e.status = 'completed') AS filled,
                avg(e.days) FILTER (WHERE e.status = 'completed') AS fill_mean,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY e.days)
                    FILTER (WHERE e.status = 'completed') AS fill_p90,
                count(*) AS ended,
                count(*) FILTER (WHERE e.status = 'cancelled') AS cancelled
           FROM ended e
           JOIN short s ON s.order_id = e.order_id
          GROUP BY s.sku) t)
    END AS ended_by_sku
""")
"""The period: `placed` (orders placed, and how many went on backorder), `ended` (fill time,
cancels, the FTC rule's cancels), `fill_days` (the histogram: filled backorders per whole days),
`daily` (every UTC day: went on backorder, filled, cancelled), `ftc` (notices sent), and per sku
(`placed_by_sku`, `ended_by_sku`: the orders in which the sku waited)."""
