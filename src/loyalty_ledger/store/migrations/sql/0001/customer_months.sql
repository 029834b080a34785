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
