-- pending_points: the pending points liability by maturity date (UTC calendar day of the
-- instant the points mature): per day, the pending amounts made, the points they were
-- created with, matured (credited), cancelled by returns, and still pending, with its
-- money value at loyalty.point_value (see points_liability). A day before the ledger's
-- clock can still hold pending points: they mature at the customer's next event or tick.
-- Sums over customers are numeric: the points limit bounds each customer, not their sum.

-- create
CREATE VIEW pending_points AS
WITH setting AS (
    SELECT coalesce(nullif(current_setting('loyalty.point_value', true), '')::numeric, 0.01)
               AS point_value
), days AS (
    SELECT (matures_at AT TIME ZONE 'UTC')::date AS maturity_date,
           count(*) AS pending_amounts,
           count(*) FILTER (WHERE points > matured + cancelled) AS orders_pending,
           sum(points)::numeric AS points_created,
           sum(matured)::numeric AS points_matured,
           sum(cancelled)::numeric AS points_cancelled,
           sum(points - matured - cancelled)::numeric AS points_pending
    FROM pending_amounts
    GROUP BY 1
)
SELECT d.*, s.point_value, d.points_pending * s.point_value AS pending_value
FROM days d CROSS JOIN setting s;
