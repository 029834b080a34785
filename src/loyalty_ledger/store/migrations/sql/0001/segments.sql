CREATE VIEW segments AS
WITH weights AS (
    SELECT coalesce(nullif(current_setting('loyalty.weight_spend', true), '')::numeric, 1)
               AS weight_spend,
           coalesce(nullif(current_setting('loyalty.weight_frequency', true), '')::numeric, 1)
               AS weight_frequency,
           coalesce(nullif(current_setting('loyalty.weight_clv', true), '')::numeric, 1)
               AS weight_clv
), ranked AS (
    SELECT customer_id, recency_days, orders, historical_clv AS net_revenue,
           predicted_value_12m,
           least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY recency_days DESC)))::integer
               AS r_score,
           least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY orders)))::integer AS f_score,
           least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY historical_clv)))::integer
               AS m_score,
           percent_rank() OVER (ORDER BY historical_clv) AS spend_rank,
           percent_rank() OVER (ORDER BY orders) AS frequency_rank,
           percent_rank() OVER (ORDER BY coalesce(predicted_value_12m, 0)) AS clv_rank
    FROM customer_clv
    WHERE orders > 0
), scored AS (
    SELECT r.*, w.*,
           CASE WHEN r.r_score >= 4 AND r.f_score >= 4 AND r.m_score >= 4 THEN 'champions'
                WHEN r.f_score >= 3 AND r.r_score >= 3 THEN 'loyal'
                WHEN r.f_score >= 3 THEN 'at risk'
                WHEN r.r_score >= 3 THEN 'new'
                ELSE 'hibernating' END AS segment,
           round(((w.weight_spend * r.spend_rank::numeric
                   + w.weight_frequency * r.frequency_rank::numeric
                   + w.weight_clv * r.clv_rank::numeric)
                  / nullif(w.weight_spend + w.weight_frequency + w.weight_clv, 0)), 6)
               AS value_score
    FROM ranked r CROSS JOIN weights w
)
SELECT customer_id, recency_days, orders, net_revenue, predicted_value_12m,
       r_score, f_score, m_score, r_score::text || f_score::text || m_score::text AS rfm,
       segment, weight_spend, weight_frequency, weight_clv, value_score,
       rank() OVER (ORDER BY value_score DESC NULLS LAST) AS value_rank
FROM scored;
