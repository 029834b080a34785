-- customer_spend: every accepted order (amount: its total) and applied refund (amount: the
-- refund, > 0), one row per ledger entry. Feeds the tier window's next lapse and the
-- Gamma-Gamma model's mean value of repeat orders.

-- create
CREATE TABLE customer_spend (
    seq         bigint PRIMARY KEY,
    customer_id text NOT NULL,
    order_id    text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('order_placed', 'refund_applied')),
    at          timestamptz NOT NULL,
    amount      numeric NOT NULL CHECK (amount >= 0)
);
CREATE INDEX customer_spend_customer ON customer_spend (customer_id, at);

-- apply
INSERT INTO customer_spend (seq, customer_id, order_id, kind, at, amount)
SELECT seq, customer_id, ref, kind, occurred_at, amount
FROM ledger
WHERE seq > %(after)s AND seq <= %(upto)s
  AND kind IN ('order_placed', 'refund_applied');
