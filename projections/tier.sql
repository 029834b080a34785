-- tier: each customer's tier and the net spend inside the qualification
-- window, from enrollment, tier changes, orders, refunds and lapsed spend.
-- qualifying_spend = greatest(0, window_spend); both null without [tiers].

-- create
CREATE TABLE tier (
    customer_id  text PRIMARY KEY,
    tier         text,
    window_spend numeric NOT NULL
);

-- apply
INSERT INTO tier AS t (customer_id, tier, window_spend)
SELECT customer_id,
       (array_agg(tier_to ORDER BY seq DESC)
            FILTER (WHERE kind IN ('enrolled', 'tier_changed')))[1],
       coalesce(sum(CASE kind WHEN 'order_placed' THEN amount ELSE -amount END)
            FILTER (WHERE kind IN ('order_placed', 'refund_applied', 'spend_lapsed')), 0)
FROM ledger
WHERE seq > %(after)s AND seq <= %(upto)s
  AND kind IN ('enrolled', 'tier_changed', 'order_placed', 'refund_applied', 'spend_lapsed')
GROUP BY customer_id
ON CONFLICT (customer_id) DO UPDATE SET
    tier         = coalesce(excluded.tier, t.tier),
    window_spend = t.window_spend + excluded.window_spend;
