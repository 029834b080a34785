-- balance: available points and lifetime totals per customer, from credit,
-- redemption, reversal and expiry entries. Conservation is a CHECK, paired
-- with the engine's assertions: balance = earned - redeemed - reversed - expired.
-- So is the points limit of PROGRAM.md "Bounds": no total beyond 10^15 in absolute value.

-- create
CREATE TABLE balance (
    customer_id text PRIMARY KEY,
    balance     bigint NOT NULL,
    earned      bigint NOT NULL CHECK (earned >= 0),
    redeemed    bigint NOT NULL CHECK (redeemed >= 0),
    reversed    bigint NOT NULL CHECK (reversed >= 0),
    expired     bigint NOT NULL CHECK (expired >= 0),
    CONSTRAINT balance_conservation CHECK (balance = earned - redeemed - reversed - expired),
    CONSTRAINT balance_points_limit CHECK (
        abs(balance) <= 1000000000000000 AND earned <= 1000000000000000
        AND redeemed <= 1000000000000000 AND reversed <= 1000000000000000
        AND expired <= 1000000000000000)
);

-- apply
INSERT INTO balance AS b (customer_id, balance, earned, redeemed, reversed, expired)
SELECT customer_id,
       sum(CASE WHEN kind = 'credit' THEN points ELSE -points END),
       coalesce(sum(points) FILTER (WHERE kind = 'credit'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'redemption'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'reversal'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'expiry'), 0)
FROM ledger
WHERE seq > %(after)s AND seq <= %(upto)s
  AND kind IN ('credit', 'redemption', 'reversal', 'expiry')
GROUP BY customer_id
ON CONFLICT (customer_id) DO UPDATE SET
    balance  = b.balance  + excluded.balance,
    earned   = b.earned   + excluded.earned,
    redeemed = b.redeemed + excluded.redeemed,
    reversed = b.reversed + excluded.reversed,
    expired  = b.expired  + excluded.expired;
