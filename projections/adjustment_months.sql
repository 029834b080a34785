-- adjustment_months: per UTC month and reason, the support agents' adjustments: how many
-- credited and debited points, and how many points each way. Feeds adjustments.
-- Sums over customers are numeric: the points limit bounds each customer, not their sum.

-- create
CREATE TABLE adjustment_months (
    month           date NOT NULL,
    reason          text NOT NULL,
    credits         bigint NOT NULL CHECK (credits >= 0),
    debits          bigint NOT NULL CHECK (debits >= 0),
    points_credited numeric NOT NULL CHECK (points_credited >= 0),
    points_debited  numeric NOT NULL CHECK (points_debited >= 0),
    PRIMARY KEY (month, reason)
);

-- apply
INSERT INTO adjustment_months AS a (month, reason, credits, debits, points_credited,
                                    points_debited)
SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date, reason,
       count(*) FILTER (WHERE kind = 'adjustment_credit'),
       count(*) FILTER (WHERE kind = 'adjustment_debit'),
       coalesce(sum(points) FILTER (WHERE kind = 'adjustment_credit'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'adjustment_debit'), 0)
FROM ledger
WHERE seq > %(after)s AND seq <= %(upto)s
  AND kind IN ('adjustment_credit', 'adjustment_debit')
GROUP BY 1, 2
ON CONFLICT (month, reason) DO UPDATE SET
    credits         = a.credits + excluded.credits,
    debits          = a.debits + excluded.debits,
    points_credited = a.points_credited + excluded.points_credited,
    points_debited  = a.points_debited + excluded.points_debited;
