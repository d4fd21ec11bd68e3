-- The operators' exception queue, worked from the command line (`backorder exceptions`): a
-- short number an operator can type, and who resolved an exception and why. The key stays the
-- primary key (activities still write once per key, ON CONFLICT as before), `resolved_at`
-- still says open (NULL) or resolved, and a resolved row is kept.

-- Numbers follow raised_at for the rows already queued; new rows take the next ones.
ALTER TABLE exceptions ADD COLUMN id bigint;

UPDATE exceptions e
   SET id = numbered.n
  FROM (SELECT key, row_number() OVER (ORDER BY raised_at, key) AS n FROM exceptions) numbered
 WHERE e.key = numbered.key;

ALTER TABLE exceptions ALTER COLUMN id SET NOT NULL;
ALTER TABLE exceptions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;
ALTER TABLE exceptions ADD CONSTRAINT exceptions_id_key UNIQUE (id);

SELECT setval(pg_get_serial_sequence('exceptions', 'id'), max(id))
  FROM exceptions
HAVING count(*) > 0;

-- Who and why, for every resolution from now on. Rows resolved before (by SQL) did not say:
-- they say so.
ALTER TABLE exceptions
    ADD COLUMN resolved_by text,
    ADD COLUMN resolution  text;

UPDATE exceptions
   SET resolved_by = 'unknown',
       resolution  = 'resolved before 0009: who and why were not recorded'
 WHERE resolved_at IS NOT NULL;

ALTER TABLE exceptions ADD CONSTRAINT exceptions_resolved_by_whom_and_why CHECK (
    CASE WHEN resolved_at IS NULL
         THEN resolved_by IS NULL AND resolution IS NULL
         ELSE coalesce(btrim(resolved_by), '') <> '' AND coalesce(btrim(resolution), '') <> ''
    END
);

COMMENT ON COLUMN exceptions.id IS
    'The number operators name the exception by (`backorder exceptions show 42`).';
COMMENT ON COLUMN exceptions.resolved_by IS
    'Who resolved it (set with resolved_at and resolution; NULL while open).';
COMMENT ON COLUMN exceptions.resolution IS
    'Why it was resolved: the operator''s note (set with resolved_at and resolved_by).';
