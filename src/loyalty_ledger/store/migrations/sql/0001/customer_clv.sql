-- E[Y(t) | x, t_x, T], FHL (2005) eq. 10. Euler's transformation turns
-- (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z) into (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z),
-- a series with small terms that cannot overflow however many orders x.
CREATE OR REPLACE FUNCTION bgnbd_expected_purchases(
    horizon double precision, x double precision, t_x double precision, t_obs double precision,
    r double precision, alpha double precision, a double precision, b double precision)
RETURNS double precision LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    z double precision := horizon / (alpha + t_obs + horizon);
    c double precision := a + b + x - 1;
    term double precision := 1;
    total double precision := 1;
    n integer := 0;
    odds double precision := 0;
BEGIN
    IF x IS NULL OR r IS NULL OR a = 1 THEN
        RETURN NULL;
    END IF;
    LOOP
        term := term * (a + b - 1 - r + n) * (a - 1 + n) / ((c + n) * (n + 1)) * z;
        total := total + term;
        n := n + 1;
        -- A fit on a handful of buyers can give parameters whose series outgrows a double
        -- before it converges: no prediction, rather than an error for every query.
        IF abs(total) > 1e250 OR abs(term) > 1e250 THEN
            RETURN NULL;
        END IF;
        EXIT WHEN (n > 2 AND abs(term) <= 1e-15 * abs(total)) OR n >= 100000;
    END LOOP;
    IF x > 0 THEN
        odds := exp(least(700, ln(a) - ln(b + x - 1)
                             + (r + x) * (ln(alpha + t_obs) - ln(alpha + t_x))));
    END IF;
    IF (a - 1) * ln(1 - z) > 575 THEN  -- power(1 - z, a - 1) past 1e250
        RETURN NULL;
    END IF;
    RETURN (a + b + x - 1) / (a - 1) * (1 - power(1 - z, a - 1) * total) / (1 + odds);
END
$$;

-- P(alive | x, t_x, T), FHL (2005) eq. 11 (as in their 2008 note). The odds term,
-- a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x) for x > 0, in logs and capped for large x, is
-- repeated in bgnbd_expected_purchases: a function body calling another by name would
-- resolve it in the caller's search_path (an analyst's is `live`).
CREATE OR REPLACE FUNCTION bgnbd_p_alive(
    x double precision, t_x double precision, t_obs double precision,
    r double precision, alpha double precision, a double precision, b double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT 1 / (1 + CASE WHEN x > 0 THEN exp(least(700, ln(a) - ln(b + x - 1)
                + (r + x) * (ln(alpha + t_obs) - ln(alpha + t_x)))) ELSE 0 END)
$$;

-- E[M | p, q, v, m, x], Fader and Hardie (2013) eq. 5: the expected mean order value
-- (x = 0: the population mean p v / (q - 1))
CREATE OR REPLACE FUNCTION gamma_gamma_expected_value(
    x double precision, m double precision, p double precision, q double precision,
    v double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT p * (v + x * coalesce(m, 0)) / (p * x + q - 1)
$$;

CREATE VIEW customer_clv AS
WITH clock AS (
    SELECT as_of FROM ledger_clock
), orders AS (
    SELECT customer_id,
           min(at) FILTER (WHERE kind = 'order_placed') AS placed_at,
           min(seq) FILTER (WHERE kind = 'order_placed') AS placed_seq,
           sum(CASE kind WHEN 'order_placed' THEN amount ELSE -amount END) AS net
    FROM customer_spend
    GROUP BY customer_id, order_id
), repeats AS (
    -- Gamma-Gamma's m: the mean net value of the orders after the first
    SELECT customer_id, round(avg(net) FILTER (WHERE n > 1), 4) AS repeat_order_value
    FROM (SELECT customer_id, net,
                 row_number() OVER (PARTITION BY customer_id ORDER BY placed_at, placed_seq) AS n
          FROM orders) numbered
    GROUP BY customer_id
), inputs AS (
    SELECT c.customer_id,
           k.as_of,
           c.enrolled_at,
           c.orders,
           c.net_revenue,
           c.aov,
           c.first_purchase_at,
           c.last_purchase_at,
           floor(extract(epoch FROM k.as_of - c.last_purchase_at) / 86400)::integer
               AS recency_days,
           floor(extract(epoch FROM k.as_of - c.enrolled_at) / 86400)::integer AS tenure_days,
           CASE WHEN c.orders > 0 THEN c.orders - 1 END::double precision AS x,
           (extract(epoch FROM c.last_purchase_at - c.first_purchase_at) / 86400)::double precision
               AS t_x,
           (extract(epoch FROM k.as_of - c.first_purchase_at) / 86400)::double precision AS t_obs,
           rp.repeat_order_value
    FROM customers c
    CROSS JOIN clock k
    LEFT JOIN repeats rp USING (customer_id)
)
SELECT s.*, s.predicted_orders_12m * s.predicted_order_value AS predicted_value_12m
FROM (
    SELECT i.customer_id,
           i.as_of,
           i.enrolled_at,
           i.orders,
           i.net_revenue AS historical_clv,
           i.aov,
           i.first_purchase_at,
           i.last_purchase_at,
           i.recency_days,
           i.tenure_days,
           CASE WHEN i.orders > 0
                THEN round(i.orders / greatest(i.t_obs / 30.4375, 1)::numeric, 4) END
               AS orders_per_month,
           i.x,
           i.t_x,
           i.t_obs,
           i.repeat_order_value,
           m.r, m.alpha, m.a, m.b, m.p, m.q, m.v,
           m.fitted_as_of AS model_fitted_as_of,
           CASE WHEN i.x IS NOT NULL
                THEN bgnbd_p_alive(i.x, i.t_x, i.t_obs, m.r, m.alpha, m.a, m.b) END AS p_alive,
           bgnbd_expected_purchases(365, i.x, i.t_x, i.t_obs, m.r, m.alpha, m.a, m.b)
               AS predicted_orders_12m,
           CASE WHEN i.x IS NOT NULL
                THEN gamma_gamma_expected_value(i.x, i.repeat_order_value::double precision,
                                                m.p, m.q, m.v) END AS predicted_order_value
    FROM inputs i
    LEFT JOIN clv_model m ON true
) s;
