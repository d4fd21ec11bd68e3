-- Customer notices are rendered when written (what the customer gets is what an operator sees
-- in `backorder notifications`) and delivered from this outbox by the notice-delivery workflow:
-- a row is due when it is pending and its next attempt has come. A claimed row's next attempt
-- moves past the claim's lease, so a worker that dies mid-send leaves it due again, not lost.
ALTER TABLE notices
    ADD COLUMN subject         text NOT NULL DEFAULT '',
    ADD COLUMN body            text NOT NULL DEFAULT '',
    ADD COLUMN recipient       text NOT NULL DEFAULT '',
    ADD COLUMN status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_error      text,
    ADD COLUMN channel         text,
    ADD COLUMN delivery_ref    text;

UPDATE notices SET status = 'delivered' WHERE delivered_at IS NOT NULL;

DROP INDEX notices_undelivered;
CREATE INDEX notices_due ON notices (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notices_status ON notices (status, created_at);
