-- referral_activity: per customer, as a referee who referred it, when, and whether its
-- first order qualified the referral; as a referrer, the ladder rewards it was issued.

-- create
CREATE TABLE referral_activity (
    customer_id    text PRIMARY KEY,
    referrer_id    text,
    referred_at    timestamptz,
    settled_at     timestamptz,
    qualified      boolean,
    ladder_rewards text[] NOT NULL
);
CREATE INDEX referral_activity_referrer ON referral_activity (referrer_id);

-- apply
INSERT INTO referral_activity AS r (customer_id, referrer_id, referred_at, settled_at, qualified,
                                    ladder_rewards)
SELECT customer_id,
       max(ref) FILTER (WHERE kind IN ('referred', 'referral_settled')),
       min(occurred_at) FILTER (WHERE kind = 'referred'),
       min(occurred_at) FILTER (WHERE kind = 'referral_settled'),
       bool_or(cause = 'qualified') FILTER (WHERE kind = 'referral_settled'),
       coalesce(array_agg(reward ORDER BY seq) FILTER (WHERE kind = 'reward_issued'), '{}')
FROM ledger
WHERE seq > %(after)s AND seq <= %(upto)s
  AND (kind IN ('referred', 'referral_settled')
       OR (kind = 'reward_issued' AND cause = 'referral_ladder'))
GROUP BY customer_id
ON CONFLICT (customer_id) DO UPDATE SET
    referrer_id    = coalesce(r.referrer_id, excluded.referrer_id),
    referred_at    = coalesce(r.referred_at, excluded.referred_at),
    settled_at     = coalesce(r.settled_at, excluded.settled_at),
    qualified      = coalesce(r.qualified, excluded.qualified),
    ladder_rewards = r.ladder_rewards || excluded.ladder_rewards;
