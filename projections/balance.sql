-- balance: available points, lifetime totals and pending points per customer, from the
-- entries that move them. Conservation (PROGRAM.md version 2) is a CHECK, paired with
-- the engine's assertions: balance = earned + adjusted + transferred_in - redeemed
-- - reversed - expired - transferred_out. So is the points limit of PROGRAM.md "Bounds":
-- no total beyond 10^15 in absolute value. Pending points are outside the balance
-- until they mature (a `credit` then); a return may cancel some of them.

-- create
CREATE TABLE balance (
    customer_id     text PRIMARY KEY,
    balance         bigint NOT NULL,
    earned          bigint NOT NULL CHECK (earned >= 0),
    redeemed        bigint NOT NULL CHECK (redeemed >= 0),
    reversed        bigint NOT NULL CHECK (reversed >= 0),
    expired         bigint NOT NULL CHECK (expired >= 0),
    adjusted        bigint NOT NULL,  -- signed: goodwill credits less corrections
    transferred_in  bigint NOT NULL CHECK (transferred_in >= 0),
    transferred_out bigint NOT NULL CHECK (transferred_out >= 0),
    -- No sign CHECK: a catch-up's row for a batch holding a maturity but not its purchase
    -- carries a negative change, and PostgreSQL checks the proposed row of an upsert too.
    pending         bigint NOT NULL,
    CONSTRAINT balance_conservation CHECK (
        balance = earned + adjusted + transferred_in
                  - redeemed - reversed - expired - transferred_out),
    CONSTRAINT balance_points_limit CHECK (
        abs(balance) <= 1000000000000000 AND earned <= 1000000000000000
        AND redeemed <= 1000000000000000 AND reversed <= 1000000000000000
        AND expired <= 1000000000000000 AND abs(adjusted) <= 1000000000000000
        AND transferred_in <= 1000000000000000 AND transferred_out <= 1000000000000000
        AND abs(pending) <= 1000000000000000)
);

-- apply
INSERT INTO balance AS b (customer_id, balance, earned, redeemed, reversed, expired,
                          adjusted, transferred_in, transferred_out, pending)
SELECT customer_id,
       coalesce(sum(CASE WHEN kind IN ('credit', 'adjustment_credit', 'transfer_in') THEN points
                         WHEN kind IN ('redemption', 'reversal', 'expiry', 'adjustment_debit',
                                       'transfer_out') THEN -points END), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'credit'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'redemption'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'reversal'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'expiry'), 0),
       coalesce(sum(CASE kind WHEN 'adjustment_credit' THEN points
                              WHEN 'adjustment_debit' THEN -points END), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'transfer_in'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'transfer_out'), 0),
       coalesce(sum(CASE kind WHEN 'pending_created' THEN points
                              WHEN 'pending_matured' THEN -points
                              WHEN 'pending_cancelled' THEN -points END), 0)
FROM ledger
WHERE seq > %(after)s AND seq <= %(upto)s
  AND kind IN ('credit', 'redemption', 'reversal', 'expiry', 'adjustment_credit',
               'adjustment_debit', 'transfer_in', 'transfer_out', 'pending_created',
               'pending_matured', 'pending_cancelled')
GROUP BY customer_id
ON CONFLICT (customer_id) DO UPDATE SET
    balance         = b.balance         + excluded.balance,
    earned          = b.earned          + excluded.earned,
    redeemed        = b.redeemed        + excluded.redeemed,
    reversed        = b.reversed        + excluded.reversed,
    expired         = b.expired         + excluded.expired,
    adjusted        = b.adjusted        + excluded.adjusted,
    transferred_in  = b.transferred_in  + excluded.transferred_in,
    transferred_out = b.transferred_out + excluded.transferred_out,
    pending         = b.pending         + excluded.pending;
