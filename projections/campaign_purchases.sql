-- campaign_purchases: one row per purchase a campaign applied to (its campaign_applied
-- entry): the campaign, the customer, the order and its total (from the purchase's
-- order_placed entry, which shares the event_id), and the points the campaign added
-- beyond the base rules, signed (a multiplier below 1 takes some away).
-- Feeds campaign_performance.

-- create
CREATE TABLE campaign_purchases (
    seq          bigint PRIMARY KEY,  -- the campaign_applied entry's
    campaign_id  text NOT NULL,
    customer_id  text NOT NULL,
    order_id     text NOT NULL,
    at           timestamptz NOT NULL,
    order_total  numeric NOT NULL CHECK (order_total >= 0),
    points_added bigint NOT NULL
);
CREATE INDEX campaign_purchases_campaign ON campaign_purchases (campaign_id);

-- apply
-- The order_placed entry is found through the ledger's event_id index, not within the
-- step's seqs: a rebuild step may end between a purchase's entries.
INSERT INTO campaign_purchases (seq, campaign_id, customer_id, order_id, at, order_total,
                                points_added)
SELECT c.seq, c.ref, c.customer_id, o.ref, c.occurred_at, o.amount, c.amount::bigint
FROM ledger c
JOIN ledger o ON o.event_id = c.event_id AND o.customer_id = c.customer_id
             AND o.kind = 'order_placed'
WHERE c.seq > %(after)s AND c.seq <= %(upto)s
  AND c.kind = 'campaign_applied';
