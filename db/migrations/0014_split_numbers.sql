-- Split-order numbering: the backordered remainder of an order ships under a number of its own
-- (the site's split_numbering: <order number>-001, -002... or <order number>-backorder), and
-- fulfilment's paperwork prices it at what is still to pay for it.

-- -- shipments ---------------------------------------------------------------------------------
-- order_number: the number fulfilment ships and files the shipment under, always set: the
-- split's number, else the order's own. Rows written before take the read model's order
-- number, or the order id where the read model has no row (an order number may be missing
-- there only for an order whose first record never committed).
-- amount_due: what the shipment is priced at for fulfilment: 0 when the order was charged at
-- order (payment_timing = 'at_order': the parent paid for it), else its amount. NULL on rows
-- written before: whether those orders were charged at order is the payment gateway's to know,
-- not this database's; read amount there.
ALTER TABLE shipments
    ADD COLUMN order_number text,
    ADD COLUMN amount_due   numeric(18, 4) CHECK (amount_due >= 0);

UPDATE shipments s
   SET order_number = COALESCE(
           (SELECT o.order_number FROM orders o WHERE o.order_id = s.order_id), s.order_id);

ALTER TABLE shipments ALTER COLUMN order_number SET NOT NULL;

CREATE INDEX shipments_order_number ON shipments (order_number);
