-- customer_months: per customer and UTC calendar month, orders, revenue and points
-- earned, redeemed, reversed and expired (by the instant of the ledger entry).
-- Feeds retention cohorts and the monthly points flows.

-- create
CREATE TABLE customer_months (
    customer_id     text NOT NULL,
    month           date NOT NULL,
    orders          bigint NOT NULL,
    gross_revenue   numeric NOT NULL,
    refunded        numeric NOT NULL,
    points_earned   bigint NOT NULL,
    points_redeemed bigint NOT NULL,
    points_reversed bigint NOT NULL,
    points_expired  bigint NOT NULL,
    PRIMARY KEY (customer_id, month),
    -- a month's flows are part of the customer's totals: within the points limit
    CONSTRAINT customer_months_points_limit CHECK (
        points_earned BETWEEN 0 AND 1000000000000000
        AND points_redeemed BETWEEN 0 AND 1000000000000000
        AND points_reversed BETWEEN 0 AND 1000000000000000
        AND points_expired BETWEEN 0 AND 1000000000000000)
);
CREATE INDEX customer_months_month ON customer_months (month);

-- apply
INSERT INTO customer_months AS m (customer_id, month, orders, gross_revenue, refunded,
                                  points_earned, points_redeemed, points_reversed, points_expired)
SELECT customer_id,
       date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date,
       count(*) FILTER (WHERE kind = 'order_placed'),
       coalesce(sum(amount) FILTER (WHERE kind = 'order_placed'), 0),
       coalesce(sum(amount) FILTER (WHERE kind = 'refund_applied'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'credit'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'redemption'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'reversal'), 0),
       coalesce(sum(points) FILTER (WHERE kind = 'expiry'), 0)
FROM ledger
WHERE seq > %(after)s AND seq <= %(upto)s
  AND kind IN ('order_placed', 'refund_applied', 'credit', 'redemption', 'reversal', 'expiry')
GROUP BY 1, 2
ON CONFLICT (customer_id, month) DO UPDATE SET
    orders          = m.orders + excluded.orders,
    gross_revenue   = m.gross_revenue + excluded.gross_revenue,
    refunded        = m.refunded + excluded.refunded,
    points_earned   = m.points_earned + excluded.points_earned,
    points_redeemed = m.points_redeemed + excluded.points_redeemed,
    points_reversed = m.points_reversed + excluded.points_reversed,
    points_expired  = m.points_expired + excluded.points_expired;
