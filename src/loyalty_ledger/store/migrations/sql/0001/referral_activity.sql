CREATE TABLE referral_activity (
    customer_id    text PRIMARY KEY,
    referrer_id    text,
    referred_at    timestamptz,
    settled_at     timestamptz,
    qualified      boolean,
    ladder_rewards text[] NOT NULL
);
CREATE INDEX referral_activity_referrer ON referral_activity (referrer_id);
