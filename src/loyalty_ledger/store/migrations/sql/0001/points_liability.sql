CREATE VIEW points_liability AS
WITH setting AS (
    SELECT coalesce(nullif(current_setting('loyalty.point_value', true), '')::numeric, 0.01)
               AS point_value
), flows AS (
    SELECT month,
           sum(points_earned)::numeric AS points_earned,
           sum(points_redeemed)::numeric AS points_redeemed,
           sum(points_reversed)::numeric AS points_reversed,
           sum(points_expired)::numeric AS points_expired
    FROM customer_months
    GROUP BY month
), expiring AS (
    SELECT date_trunc('month', expires_at AT TIME ZONE 'UTC')::date AS month,
           sum(remaining)::numeric AS points_expiring
    FROM point_lots
    WHERE lot_seq > 0 AND expires_at IS NOT NULL
    GROUP BY 1
), months AS (
    SELECT month FROM flows UNION SELECT month FROM expiring
), joined AS (
    SELECT m.month,
           coalesce(f.points_earned, 0) AS points_earned,
           coalesce(f.points_redeemed, 0) AS points_redeemed,
           coalesce(f.points_reversed, 0) AS points_reversed,
           coalesce(f.points_expired, 0) AS points_expired,
           coalesce(e.points_expiring, 0) AS points_expiring
    FROM months m
    LEFT JOIN flows f USING (month)
    LEFT JOIN expiring e USING (month)
)
SELECT j.*,
       round(sum(j.points_expired) OVER w::numeric
             / nullif(sum(j.points_earned) OVER w, 0), 6) AS breakage_rate_to_date,
       s.point_value,
       j.points_earned * s.point_value AS earned_value,
       j.points_redeemed * s.point_value AS redeemed_value,
       j.points_expired * s.point_value AS expired_value,
       j.points_expiring * s.point_value AS expiring_value
FROM joined j
CROSS JOIN setting s
WINDOW w AS (ORDER BY j.month);
