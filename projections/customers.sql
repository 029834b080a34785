-- customers: the read model of PROGRAM.md, one row per enrolled customer,
-- joined from the balance, tier, customer_value and customer_membership projections.
-- Version 2's fields read as 0, null and "0" where a feature is unused (PROGRAM.md).

-- create
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
       v.enrolled_at,
       coalesce(b.pending, 0)         AS pending,
       coalesce(b.adjusted, 0)        AS adjusted,
       coalesce(b.transferred_in, 0)  AS transferred_in,
       coalesce(b.transferred_out, 0) AS transferred_out,
       m.plan                         AS membership,
       m.ends_at                      AS membership_ends_at,
       coalesce(m.fees, 0)            AS membership_fees
FROM customer_value v
LEFT JOIN balance b USING (customer_id)
LEFT JOIN tier t USING (customer_id)
LEFT JOIN customer_membership m USING (customer_id)
WHERE v.enrolled_at IS NOT NULL;
