-- Pre-orders: a product released on a given day. Orders taken before it wait for it even when
-- stock arrives earlier (the planner holds the sku's stock back until then), and after the last
-- day pre-orders are taken the product takes no backorder until its release.
ALTER TABLE products
    ADD COLUMN preorder_release date,
    ADD COLUMN preorder_end     date,
    ADD CONSTRAINT products_preorder_window
        CHECK (preorder_end IS NULL OR (preorder_release IS NOT NULL
                                        AND preorder_end < preorder_release));
