-- customer_value: enrollment, orders and revenue, first and last purchase,
-- qualified referrals and rewards issued (in issue order) per customer.

-- create
CREATE TABLE customer_value (
    customer_id         text PRIMARY KEY,
    enrolled_at         timestamptz,
    orders              bigint NOT NULL CHECK (orders >= 0),
    gross_revenue       numeric NOT NULL,
    refunded            numeric NOT NULL,
    first_purchase_at   timestamptz,
    last_purchase_at    timestamptz,
    referrals_qualified bigint NOT NULL,
    rewards             text[] NOT NULL
);

-- apply
INSERT INTO customer_value AS v (customer_id, enrolled_at, orders, gross_revenue, refunded,
                                 first_purchase_at, last_purchase_at, referrals_qualified, rewards)
SELECT customer_id,
       min(occurred_at) FILTER (WHERE kind = 'enrolled'),
       count(*) FILTER (WHERE kind = 'order_placed'),
       coalesce(sum(amount) FILTER (WHERE kind = 'order_placed'), 0),
       coalesce(sum(amount) FILTER (WHERE kind = 'refund_applied'), 0),
       min(occurred_at) FILTER (WHERE kind = 'order_placed'),
       max(occurred_at) FILTER (WHERE kind = 'order_placed'),
       count(*) FILTER (WHERE kind = 'referral_qualified'),
       coalesce(array_agg(reward ORDER BY seq) FILTER (WHERE kind = 'reward_issued'), '{}')
FROM ledger
WHERE seq > %(after)s AND seq <= %(upto)s
  AND kind IN ('enrolled', 'order_placed', 'refund_applied', 'referral_qualified', 'reward_issued')
GROUP BY customer_id
ON CONFLICT (customer_id) DO UPDATE SET
    enrolled_at         = least(v.enrolled_at, excluded.enrolled_at),
    orders              = v.orders + excluded.orders,
    gross_revenue       = v.gross_revenue + excluded.gross_revenue,
    refunded            = v.refunded + excluded.refunded,
    first_purchase_at   = least(v.first_purchase_at, excluded.first_purchase_at),
    last_purchase_at    = greatest(v.last_purchase_at, excluded.last_purchase_at),
    referrals_qualified = v.referrals_qualified + excluded.referrals_qualified,
    rewards             = v.rewards || excluded.rewards;
