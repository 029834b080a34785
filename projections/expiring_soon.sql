-- expiring_soon: per customer, the points of open lots that expire in the next 30 days
-- after the ledger's clock (as_of < expires_at <= as_of + 30 x 24 hours), for "use them
-- before they go" campaigns: how many, in how many lots, the first expiry, the
-- customer's balance and the points' money value at loyalty.point_value. Another window:
--   SET loyalty.expiring_days = '7';
-- Lots whose expiry is already at or before as_of are left out: they expire at the
-- customer's next event or tick, before anything could spend them.

-- create
CREATE VIEW expiring_soon AS
WITH setting AS (
    SELECT coalesce(nullif(current_setting('loyalty.expiring_days', true), '')::integer, 30)
               AS days,
           coalesce(nullif(current_setting('loyalty.point_value', true), '')::numeric, 0.01)
               AS point_value
), span AS (
    SELECT k.as_of, k.as_of + make_interval(hours => 24 * s.days) AS expiring_until,
           s.point_value
    FROM ledger_clock k CROSS JOIN setting s
)
SELECT l.customer_id,
       w.as_of,
       w.expiring_until,
       sum(l.remaining)::bigint AS expiring_points,
       count(*) AS lots,
       min(l.expires_at) AS first_expires_at,
       b.balance,
       sum(l.remaining) * w.point_value AS expiring_value
FROM point_lots l
CROSS JOIN span w
LEFT JOIN balance b ON b.customer_id = l.customer_id
WHERE l.lot_seq > 0 AND l.expires_at > w.as_of AND l.expires_at <= w.expiring_until
GROUP BY l.customer_id, w.as_of, w.expiring_until, w.point_value, b.balance;
