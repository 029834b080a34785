-- campaign_performance: per campaign id, the purchases it applied to, the customers it
-- reached, their revenue (order totals; net_revenue after the refunds applied to those
-- orders since), the points it added beyond the base rules (signed: a multiplier below
-- 1 takes points away, so the sum can be negative) and the revenue per point added
-- (null when it added none). A purchase two campaigns applied to counts for both.

-- create
CREATE VIEW campaign_performance AS
WITH refunds AS (
    SELECT customer_id, order_id, sum(amount) AS refunded
    FROM customer_spend
    WHERE kind = 'refund_applied'
    GROUP BY customer_id, order_id
)
SELECT p.campaign_id,
       count(*) AS purchases,
       count(DISTINCT p.customer_id) AS customers_reached,
       sum(p.order_total) AS revenue,
       coalesce(sum(r.refunded), 0) AS refunded,
       sum(p.order_total) - coalesce(sum(r.refunded), 0) AS net_revenue,
       sum(p.points_added)::numeric AS points_added,
       round(sum(p.order_total) / nullif(sum(p.points_added), 0), 4) AS revenue_per_point,
       min(p.at) AS first_applied_at,
       max(p.at) AS last_applied_at
FROM campaign_purchases p
LEFT JOIN refunds r ON r.customer_id = p.customer_id AND r.order_id = p.order_id
GROUP BY p.campaign_id;
