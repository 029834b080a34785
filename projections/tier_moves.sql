-- tier_moves: per UTC month and tier, customers who entered it (enrollment, tier change)
-- and who left it (tier change). Their running sum is the tier distribution over time.

-- create
CREATE TABLE tier_moves (
    month   date NOT NULL,
    tier    text NOT NULL,
    entered bigint NOT NULL,
    exited  bigint NOT NULL,
    PRIMARY KEY (month, tier)
);

-- apply
INSERT INTO tier_moves AS t (month, tier, entered, exited)
SELECT month, tier, sum(entered), sum(exited)
FROM (
    SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date AS month, tier_to AS tier,
           1 AS entered, 0 AS exited
    FROM ledger
    WHERE seq > %(after)s AND seq <= %(upto)s
      AND kind IN ('enrolled', 'tier_changed') AND tier_to IS NOT NULL
    UNION ALL
    SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date, tier_from, 0, 1
    FROM ledger
    WHERE seq > %(after)s AND seq <= %(upto)s
      AND kind = 'tier_changed' AND tier_from IS NOT NULL
) moves
GROUP BY month, tier
ON CONFLICT (month, tier) DO UPDATE SET
    entered = t.entered + excluded.entered,
    exited  = t.exited + excluded.exited;
