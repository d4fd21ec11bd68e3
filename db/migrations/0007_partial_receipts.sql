-- Purchase orders received in parts, and closed short.
--
-- future_receipts.quantity is now what is STILL TO COME: a receipt of part of a purchase order
-- moves those units from quantity to received (quantity + received = the order's quantity).
-- Everything that reads an open receipt's free units (quantity - reserved) therefore sees only
-- the open rest, and the existing CHECK reserved <= quantity keeps promises within it: never
-- more promised on a purchase order than is still to come. reserved counts the units promised
-- from the open rest (a received unit's promise is a reservation of stock on hand).
--
-- A purchase order received in full has quantity 0; one closed short ('closed') or cancelled
-- keeps the rest that never came in quantity, and in reserved the promises its orders have not
-- given back yet (they are told, and release them).

ALTER TABLE future_receipts
    ADD COLUMN received integer NOT NULL DEFAULT 0 CHECK (received >= 0);

ALTER TABLE future_receipts DROP CONSTRAINT future_receipts_quantity_check;
ALTER TABLE future_receipts DROP CONSTRAINT future_receipts_status_check;

-- Receipts received before this migration: their units are on hand and their promises were
-- turned into stock reservations; what came is in their stock movement.
UPDATE future_receipts f
   SET received = coalesce(
           (SELECT sum(m.delta)
              FROM stock_movements m
             WHERE m.sku = f.sku AND m.location = f.location
               AND m.reason = 'future receipt ' || f.receipt_id || ' received'),
           f.quantity),
       quantity = 0,
       reserved = 0
 WHERE f.status = 'received';

ALTER TABLE future_receipts
    ADD CONSTRAINT future_receipts_quantity_check CHECK (quantity >= 0),
    ADD CONSTRAINT future_receipts_status_check
        CHECK (status IN ('open', 'received', 'closed', 'cancelled')),
    -- only a purchase order received in full has nothing left to come
    ADD CONSTRAINT future_receipts_rest_unless_received
        CHECK (quantity > 0 OR status = 'received');
