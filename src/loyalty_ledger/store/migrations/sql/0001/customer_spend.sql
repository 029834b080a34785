CREATE TABLE customer_spend (
    seq         bigint PRIMARY KEY,
    customer_id text NOT NULL,
    order_id    text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('order_placed', 'refund_applied')),
    at          timestamptz NOT NULL,
    amount      numeric NOT NULL CHECK (amount >= 0)
);
CREATE INDEX customer_spend_customer ON customer_spend (customer_id, at);
