-- adjustments: per UTC month and reason, the adjustments support agents made (credits
-- and debits), the points they credited and debited, and the net (signed, as the
-- customers' `adjusted`), with its money value at loyalty.point_value.

-- create
CREATE VIEW adjustments AS
WITH setting AS (
    SELECT coalesce(nullif(current_setting('loyalty.point_value', true), '')::numeric, 0.01)
               AS point_value
)
SELECT a.month,
       a.reason,
       a.credits + a.debits AS adjustments,
       a.credits,
       a.debits,
       a.points_credited,
       a.points_debited,
       a.points_credited - a.points_debited AS net_points,
       s.point_value,
       (a.points_credited - a.points_debited) * s.point_value AS net_value
FROM adjustment_months a CROSS JOIN setting s;
