-- An inventory event id is the sender's idempotency key: the same event sent again is a
-- duplicate, the same id with other content is rejected as a conflict naming what differs
-- (activities/feed.py). The comparison reads the payload recorded with the id. Events applied
-- since 0004 have theirs; those applied before it have '{}', which says nothing about them:
-- they become NULL (unknown), and a redelivery of one stays a duplicate, as before. A row
-- written without a payload (a repair by SQL) is unknown too.
ALTER TABLE inventory_events
    ALTER COLUMN payload DROP NOT NULL,
    ALTER COLUMN payload DROP DEFAULT;

UPDATE inventory_events SET payload = NULL WHERE payload = '{}'::jsonb;

COMMENT ON COLUMN inventory_events.payload IS
    'The event as first applied under this id (its JSON); NULL: applied before payloads were '
    'kept, so a redelivery cannot be compared and is taken as a duplicate.';
