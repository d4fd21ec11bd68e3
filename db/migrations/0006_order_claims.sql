-- An order id is accepted once, whatever the entry point or workflow id, and however long ago
-- its first run ended: acceptance claims the id here before any side effect. The claimant is
-- the chain of runs that accepted it (its first run id: continue-as-new keeps it, a new start
-- under the same workflow id does not), so only a second acceptance is refused.
CREATE TABLE order_claims (
    order_id     text PRIMARY KEY,
    workflow_id  text NOT NULL,
    run_id       text NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now()
);

-- Orders accepted before claims existed are claimed by the runs that accepted them.
INSERT INTO order_claims (order_id, workflow_id, run_id)
SELECT order_id, workflow_id, 'accepted-before-claims' FROM orders;
