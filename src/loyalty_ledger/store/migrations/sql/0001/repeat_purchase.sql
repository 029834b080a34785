CREATE VIEW repeat_purchase AS
SELECT count(*) FILTER (WHERE orders > 0) AS customers_with_orders,
       count(*) FILTER (WHERE orders > 1) AS repeat_customers,
       round(count(*) FILTER (WHERE orders > 1)::numeric
             / nullif(count(*) FILTER (WHERE orders > 0), 0), 4) AS repeat_purchase_rate
FROM customer_value;
