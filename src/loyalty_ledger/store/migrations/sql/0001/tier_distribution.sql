CREATE VIEW tier_distribution AS
WITH months AS (
    SELECT generate_series(min(month), max(month), interval '1 month')::date AS month
    FROM tier_moves
), tiers AS (
    SELECT DISTINCT tier FROM tier_moves
), grid AS (
    SELECT m.month, t.tier, coalesce(tm.entered, 0) - coalesce(tm.exited, 0) AS net
    FROM months m
    CROSS JOIN tiers t
    LEFT JOIN tier_moves tm ON tm.month = m.month AND tm.tier = t.tier
)
SELECT g.month, g.tier, l.rank AS tier_rank,
       sum(g.net) OVER (PARTITION BY g.tier ORDER BY g.month)::bigint AS customers
FROM grid g
LEFT JOIN tier_levels l ON l.name = g.tier;
