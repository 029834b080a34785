-- membership_history: every membership entry (a plan started, renewed, or ended because
-- its end passed), with the plan, the fee paid (null for an end) and the end instant
-- after it. Feeds memberships, which reads the periods out of it.

-- create
CREATE TABLE membership_history (
    seq         bigint PRIMARY KEY,
    customer_id text NOT NULL,
    plan        text NOT NULL,
    kind        text NOT NULL
        CHECK (kind IN ('membership_started', 'membership_renewed', 'membership_ended')),
    at          timestamptz NOT NULL,
    paid        numeric CHECK (paid >= 0),
    ends_at     timestamptz NOT NULL
);
CREATE INDEX membership_history_customer ON membership_history (customer_id, seq);

-- apply
INSERT INTO membership_history (seq, customer_id, plan, kind, at, paid, ends_at)
SELECT seq, customer_id, ref, kind, occurred_at, amount, expires_at
FROM ledger
WHERE seq > %(after)s AND seq <= %(upto)s
  AND kind IN ('membership_started', 'membership_renewed', 'membership_ended');
