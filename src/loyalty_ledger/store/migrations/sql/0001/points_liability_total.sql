CREATE VIEW points_liability_total AS
WITH setting AS (
    SELECT coalesce(nullif(current_setting('loyalty.point_value', true), '')::numeric, 0.01)
               AS point_value
), lots AS (
    SELECT coalesce(sum(remaining) FILTER (WHERE lot_seq > 0), 0)::numeric AS outstanding_points,
           coalesce(sum(remaining) FILTER (WHERE lot_seq > 0 AND expires_at IS NOT NULL), 0)::numeric
               AS expiring_points,
           coalesce(sum(remaining) FILTER (WHERE lot_seq > 0 AND expires_at IS NULL), 0)::numeric
               AS never_expiring_points,
           coalesce(sum(remaining) FILTER (WHERE lot_seq = 0), 0)::numeric AS debt_points
    FROM point_lots
), totals AS (
    SELECT coalesce(sum(earned), 0)::numeric AS points_earned,
           coalesce(sum(redeemed), 0)::numeric AS points_redeemed,
           coalesce(sum(reversed), 0)::numeric AS points_reversed,
           coalesce(sum(expired), 0)::numeric AS points_expired
    FROM balance
)
SELECT (SELECT as_of FROM ledger_clock) AS as_of,
       l.*, t.*,
       round(t.points_expired::numeric / nullif(t.points_earned, 0), 6) AS breakage_rate,
       round(t.points_redeemed::numeric / nullif(t.points_earned, 0), 6) AS redemption_rate,
       s.point_value,
       l.outstanding_points * s.point_value AS liability_value
FROM lots l CROSS JOIN totals t CROSS JOIN setting s;
