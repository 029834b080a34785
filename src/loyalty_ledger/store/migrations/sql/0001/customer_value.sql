CREATE TABLE customer_value (
    customer_id         text PRIMARY KEY,
    enrolled_at         timestamptz,
    orders              bigint NOT NULL CHECK (orders >= 0),
    gross_revenue       numeric NOT NULL,
    refunded            numeric NOT NULL,
    first_purchase_at   timestamptz,
    last_purchase_at    timestamptz,
    referrals_qualified bigint NOT NULL,
    rewards             text[] NOT NULL
);
