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
