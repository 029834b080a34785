CREATE VIEW tier_progress AS
WITH clock AS (
    SELECT as_of FROM ledger_clock
), program AS (
    SELECT max(window_days) AS window_days FROM tier_levels
), current_tier AS (
    SELECT c.customer_id, c.tier, c.qualifying_spend, l.rank
    FROM customers c
    LEFT JOIN tier_levels l ON l.name = c.tier
    WHERE c.tier IS NOT NULL
), oldest AS (
    -- the earliest instant of spend still inside the window, and the spend at it
    SELECT customer_id, at, amount
    FROM (SELECT s.customer_id, s.at,
                 sum(CASE s.kind WHEN 'order_placed' THEN s.amount ELSE -s.amount END) AS amount,
                 rank() OVER (PARTITION BY s.customer_id ORDER BY s.at) AS n
          FROM customer_spend s CROSS JOIN clock k CROSS JOIN program p
          WHERE s.at > k.as_of - make_interval(days => p.window_days)
          GROUP BY s.customer_id, s.at) in_window
    WHERE n = 1
)
SELECT cur.customer_id,
       cur.tier,
       cur.qualifying_spend,
       nxt.name AS next_tier,
       nxt.min_spend AS next_tier_min_spend,
       greatest(nxt.min_spend - cur.qualifying_spend, 0) AS amount_needed,
       o.at + make_interval(days => p.window_days) AS spend_lapses_at,
       o.amount AS lapsing_spend
FROM current_tier cur
CROSS JOIN program p
LEFT JOIN tier_levels nxt ON nxt.rank = cur.rank + 1
LEFT JOIN oldest o ON o.customer_id = cur.customer_id;
