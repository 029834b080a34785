CREATE VIEW customers AS
SELECT v.customer_id,
       coalesce(b.balance, 0)  AS balance,
       coalesce(b.earned, 0)   AS earned,
       coalesce(b.redeemed, 0) AS redeemed,
       coalesce(b.reversed, 0) AS reversed,
       coalesce(b.expired, 0)  AS expired,
       t.tier,
       CASE WHEN t.tier IS NOT NULL THEN greatest(t.window_spend, 0) END AS qualifying_spend,
       v.orders,
       v.gross_revenue,
       v.refunded,
       v.gross_revenue - v.refunded AS net_revenue,
       CASE WHEN v.orders > 0
            THEN round((v.gross_revenue - v.refunded) / v.orders, 2) END AS aov,
       v.first_purchase_at,
       v.last_purchase_at,
       v.referrals_qualified,
       v.rewards,
       v.enrolled_at
FROM customer_value v
LEFT JOIN balance b USING (customer_id)
LEFT JOIN tier t USING (customer_id)
WHERE v.enrolled_at IS NOT NULL;
