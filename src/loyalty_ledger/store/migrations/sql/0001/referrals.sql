CREATE VIEW referrals AS
WITH made AS (
    SELECT r.referrer_id,
           count(*) AS referrals_made,
           count(*) FILTER (WHERE r.settled_at IS NOT NULL) AS referrals_settled,
           count(*) FILTER (WHERE r.qualified) AS referrals_qualified,
           coalesce(sum(v.orders), 0)::bigint AS referred_orders,
           coalesce(sum(v.gross_revenue - v.refunded), 0) AS referred_net_revenue
    FROM referral_activity r
    LEFT JOIN customer_value v ON v.customer_id = r.customer_id
    WHERE r.referrer_id IS NOT NULL
    GROUP BY r.referrer_id
), ladder AS (
    SELECT customer_id AS referrer_id, ladder_rewards
    FROM referral_activity
    WHERE cardinality(ladder_rewards) > 0
)
SELECT coalesce(m.referrer_id, l.referrer_id) AS referrer_id,
       coalesce(m.referrals_made, 0) AS referrals_made,
       coalesce(m.referrals_settled, 0) AS referrals_settled,
       coalesce(m.referrals_qualified, 0) AS referrals_qualified,
       coalesce(cardinality(l.ladder_rewards), 0) AS ladder_rewards,
       coalesce(l.ladder_rewards, '{}') AS ladder_reward_ids,
       coalesce(m.referred_orders, 0) AS referred_orders,
       coalesce(m.referred_net_revenue, 0) AS referred_net_revenue
FROM made m
FULL JOIN ladder l ON l.referrer_id = m.referrer_id;
