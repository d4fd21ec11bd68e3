-- Each sku's queue of waiting orders in the planner's order, so that an allocation pass reads
-- only the head of it (an index range scan per tier) instead of sorting every waiting order:
-- within a tier, first placed first, the order id settling ties in code point order (Python's
-- str order, hence COLLATE "C"); the pass merges the tiers by the policy's ranks. It begins
-- with (site, sku), so it also serves every lookup demand_by_site_sku served.
CREATE INDEX demand_queue ON demand (site, sku, tier, placed_at, order_id COLLATE "C");
DROP INDEX demand_by_site_sku;
