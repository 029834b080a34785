CREATE TABLE tier (
    customer_id  text PRIMARY KEY,
    tier         text,
    window_spend numeric NOT NULL
);
