-- Fulfilment closes the loop: the warehouse confirms what left the building (and what the
-- picker could not find), the carrier what arrived. Until now a ready shipment's units stayed
-- reserved for ever and on hand never went down.

-- -- reservations ------------------------------------------------------------------------------
-- Units that left with a shipment are neither held (they are no longer on hand to give out) nor
-- released (nobody may have them again): a state of their own, so that a reconciliation can
-- tell what an order was given from what it gave back. Like a release, a shipment says which
-- call did it and when. reservations_held (state = 'reserved') and the other partial indexes
-- already leave shipped rows out, as they should: nothing reads a shipped row as stock.
ALTER TABLE reservations DROP CONSTRAINT reservations_state_check;
ALTER TABLE reservations
    ADD COLUMN shipped_key text,  -- the ship_stock call that consumed it
    ADD COLUMN shipped_at  timestamptz,
    ADD CONSTRAINT reservations_state_check
        CHECK (state IN ('reserved', 'released', 'shipped')),
    ADD CONSTRAINT reservations_shipped_has_time_and_key
        CHECK ((state = 'shipped') = (shipped_at IS NOT NULL AND shipped_key IS NOT NULL)),
    -- only units on hand can leave; a promise of a purchase order still to come cannot
    ADD CONSTRAINT reservations_shipped_from_stock
        CHECK (state <> 'shipped' OR source = 'current');

-- -- shipments ---------------------------------------------------------------------------------
-- What the warehouse and the carrier tell us. A shipped shipment says when it left; a delivered
-- one when it arrived. A delivered shipment need not say when it left: a carrier's delivery
-- scan may be the first (or only) news of a parcel whose dispatch confirmation was lost.
ALTER TABLE shipments DROP CONSTRAINT shipments_status_check;
ALTER TABLE shipments
    ADD COLUMN carrier            text,
    ADD COLUMN tracking_number    text,
    ADD COLUMN shipped_at         timestamptz,
    ADD COLUMN estimated_delivery date,
    ADD COLUMN delivered_at       timestamptz,
    ADD CONSTRAINT shipments_status_check
        CHECK (status IN ('ready', 'transfer', 'future', 'cancelled', 'shipped', 'delivered')),
    ADD CONSTRAINT shipments_shipped_has_time
        CHECK (status <> 'shipped' OR shipped_at IS NOT NULL),
    ADD CONSTRAINT shipments_delivered_iff_time
        CHECK ((status = 'delivered') = (delivered_at IS NOT NULL));

-- -- stock movements ---------------------------------------------------------------------------
-- A shipment or a short pick changes on hand, so it writes a stock movement like the feed does:
-- on hand stays the sum of the row's movements. The foreign key to inventory_events stays: the
-- fulfilment operation records itself there too, its ledger key as the event id, kind
-- 'shipped' or 'short_pick' (never one of the feed's kinds), in the transaction of its
-- movements. Relaxing the key instead (a nullable event_id, or a second key to
-- ledger_operations) would leave every reconciliation that joins movements to their events
-- blind to these movements. Event ids and ledger keys share one namespace from now on: a ledger
-- key a feed event already took is refused by the operation (activities/fulfilment_ledger.py),
-- and a feed event sent later under a ledger key is rejected by the feed as an id conflict.
COMMENT ON COLUMN stock_movements.event_id IS
    'What moved the units: an inventory feed event, or a fulfilment ledger operation recorded '
    'in inventory_events under its ledger key (kind shipped or short_pick).';
