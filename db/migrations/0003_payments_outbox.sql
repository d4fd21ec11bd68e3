-- Payments (the sandbox gateway's own state), the customer-notice outbox, the operators'
-- exception queue and the shipments handed to fulfilment. Every row that an activity writes is
-- keyed by the activity's idempotency key, so a retried activity never takes effect twice.

-- -- sandbox payment gateway ------------------------------------------------------------------
-- Running totals live on the authorisation (and per capture for refunds); the CHECKs are the
-- last line of defence against over-capture or over-refund if the code's checks were wrong.
CREATE TABLE payment_authorisations (
    reference     text PRIMARY KEY,
    order_id      text NOT NULL,
    currency      char(3) NOT NULL,
    amount        numeric(18, 4) NOT NULL CHECK (amount > 0),
    captured      numeric(18, 4) NOT NULL DEFAULT 0 CHECK (captured >= 0),
    voided        numeric(18, 4) NOT NULL DEFAULT 0 CHECK (voided >= 0),
    refunded      numeric(18, 4) NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    authorised_at timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    CHECK (captured + voided <= amount),
    CHECK (refunded <= captured),
    CHECK (expires_at > authorised_at)
);

CREATE INDEX payment_authorisations_order ON payment_authorisations (order_id);

CREATE TABLE payment_captures (
    reference         text PRIMARY KEY,
    authorisation_ref text NOT NULL REFERENCES payment_authorisations (reference),
    amount            numeric(18, 4) NOT NULL CHECK (amount > 0),
    refunded          numeric(18, 4) NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    captured_at       timestamptz NOT NULL,
    seq               bigint GENERATED ALWAYS AS IDENTITY, -- creation order, for refunds
    CHECK (refunded <= amount)
);

CREATE INDEX payment_captures_authorisation ON payment_captures (authorisation_ref);

-- One row per idempotency key: the request as first sent (to refuse the same key with another
-- request) and its result (returned again on a retry). Also the journal of voids and refunds.
CREATE TABLE payment_requests (
    key        text PRIMARY KEY,
    operation  text NOT NULL CHECK (operation IN ('authorise', 'capture', 'void', 'refund')),
    request    jsonb NOT NULL,
    order_id   text NOT NULL,
    target     text,             -- the authorisation or capture the operation applies to
    reference  text NOT NULL UNIQUE,
    amount     numeric(18, 4) NOT NULL CHECK (amount >= 0),
    expires_at timestamptz,      -- authorisations only
    created_at timestamptz NOT NULL
);

CREATE INDEX payment_requests_target ON payment_requests (target) WHERE target IS NOT NULL;

-- -- customer notice outbox -------------------------------------------------------------------
-- Written by the workflow's send_notice activity, delivered (rendered, mailed) by the notices
-- subsystem, which sets delivered_at.
CREATE TABLE notices (
    key          text PRIMARY KEY,
    order_id     text NOT NULL,
    kind         text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);

CREATE INDEX notices_undelivered ON notices (created_at) WHERE delivered_at IS NULL;
CREATE INDEX notices_order ON notices (order_id);

-- -- operators' exception queue ---------------------------------------------------------------
CREATE TABLE exceptions (
    key         text PRIMARY KEY,
    order_id    text NOT NULL,
    kind        text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
    detail      text NOT NULL,
    raised_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);

CREATE INDEX exceptions_open_by_severity ON exceptions (severity, raised_at)
    WHERE resolved_at IS NULL;
CREATE INDEX exceptions_order ON exceptions (order_id);

-- -- shipments handed to fulfilment -----------------------------------------------------------
-- The current state of each shipment; shipment_events records every applied publish_shipment
-- key, so a retried publish does nothing twice (the key is claimed before the shipment row is
-- written, hence the deferred foreign key).
CREATE TABLE shipments (
    shipment_id   text PRIMARY KEY,
    order_id      text NOT NULL,
    kind          text NOT NULL,
    status        text NOT NULL CHECK (status IN ('ready', 'transfer', 'future', 'cancelled')),
    location      text NOT NULL,
    destination   text,
    expected_date date,
    amount        numeric(18, 4) NOT NULL CHECK (amount >= 0),
    allotments    jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX shipments_order ON shipments (order_id);
CREATE INDEX shipments_status ON shipments (status, expected_date);

CREATE TABLE shipment_events (
    key         text PRIMARY KEY,
    shipment_id text NOT NULL REFERENCES shipments (shipment_id) DEFERRABLE INITIALLY DEFERRED,
    status      text NOT NULL,
    payload     jsonb NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX shipment_events_shipment ON shipment_events (shipment_id, at);
