CREATE VIEW retention AS
WITH buyers AS (
    SELECT customer_id, min(month) AS cohort_month, sum(orders) AS orders
    FROM customer_months
    WHERE orders > 0
    GROUP BY customer_id
), cohorts AS (
    SELECT cohort_month, count(*) AS cohort_size,
           count(*) FILTER (WHERE orders >= 2) AS repeat_customers
    FROM buyers
    GROUP BY cohort_month
), grid AS (
    SELECT c.cohort_month, c.cohort_size, c.repeat_customers,
           generate_series(c.cohort_month,
                           date_trunc('month', k.as_of AT TIME ZONE 'UTC')::date,
                           interval '1 month')::date AS month
    FROM cohorts c CROSS JOIN ledger_clock k
), active AS (
    SELECT b.cohort_month, m.month, count(*) AS active_customers
    FROM buyers b
    JOIN customer_months m ON m.customer_id = b.customer_id AND m.orders > 0
    GROUP BY b.cohort_month, m.month
)
SELECT g.cohort_month,
       g.month,
       ((extract(year FROM g.month) - extract(year FROM g.cohort_month)) * 12
        + extract(month FROM g.month) - extract(month FROM g.cohort_month))::integer
           AS months_since_first,
       g.cohort_size,
       coalesce(a.active_customers, 0) AS active_customers,
       round(coalesce(a.active_customers, 0)::numeric / g.cohort_size, 4) AS share_active,
       g.repeat_customers,
       round(g.repeat_customers::numeric / g.cohort_size, 4) AS cohort_repeat_rate
FROM grid g
LEFT JOIN active a ON a.cohort_month = g.cohort_month AND a.month = g.month;
