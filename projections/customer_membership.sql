-- customer_membership: each customer's paid membership (PROGRAM.md version 2): the plan
-- and its end while one is active, and every fee paid. The engine records
-- membership_ended when a step 2 (or a tick) sees the end at or before the customer's
-- clock, so a plan shown here is active at the customer's clock, as the contract says.

-- create
CREATE TABLE customer_membership (
    customer_id text PRIMARY KEY,
    plan        text,
    ends_at     timestamptz,
    fees        numeric NOT NULL CHECK (fees >= 0),
    started     bigint NOT NULL CHECK (started >= 0),
    renewed     bigint NOT NULL CHECK (renewed >= 0),
    CONSTRAINT customer_membership_plan_ends CHECK ((plan IS NULL) = (ends_at IS NULL))
);

-- apply
-- The last membership entry of the batch decides the plan and end (seq order); fees and
-- counts add up.
INSERT INTO customer_membership AS m (customer_id, plan, ends_at, fees, started, renewed)
SELECT customer_id,
       (array_agg(CASE WHEN kind = 'membership_ended' THEN NULL ELSE ref END
                  ORDER BY seq DESC))[1],
       (array_agg(CASE WHEN kind = 'membership_ended' THEN NULL ELSE expires_at END
                  ORDER BY seq DESC))[1],
       coalesce(sum(amount) FILTER (WHERE kind <> 'membership_ended'), 0),
       count(*) FILTER (WHERE kind = 'membership_started'),
       count(*) FILTER (WHERE kind = 'membership_renewed')
FROM ledger
WHERE seq > %(after)s AND seq <= %(upto)s
  AND kind IN ('membership_started', 'membership_renewed', 'membership_ended')
GROUP BY customer_id
ON CONFLICT (customer_id) DO UPDATE SET
    plan    = excluded.plan,
    ends_at = excluded.ends_at,
    fees    = m.fees + excluded.fees,
    started = m.started + excluded.started,
    renewed = m.renewed + excluded.renewed;
