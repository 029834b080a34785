-- memberships: per plan and UTC month, from the month of the plan's first sale to the
-- ledger's latest: the members active at the month's end (at `as_of`, the ledger's clock,
-- for its month: so the latest row is "active now"), memberships started and renewed in
-- the month, those whose end passed in it (by as_of), the fees paid in it, and members'
-- spend against non-members': the
-- orders placed (and their totals) while the customer held this plan, and those placed
-- by customers holding no plan, with their mean order value.
--
-- A membership runs from its start entry to its end entry in the customer's own stream
-- (renewals move its end; an order's step 2 ends a membership whose end passed before
-- the order, so the entries' order says whether an order was a member's). Counted as
-- active at instant T: bought at or before T, ending after T.

-- create
CREATE VIEW memberships AS
WITH numbered AS (
    SELECT h.*,
           count(*) FILTER (WHERE h.kind = 'membership_started')
               OVER (PARTITION BY h.customer_id ORDER BY h.seq) AS period
    FROM membership_history h
), periods AS (
    SELECT customer_id, period,
           min(plan) AS plan,
           min(seq) AS started_seq,
           min(at) FILTER (WHERE kind = 'membership_started') AS started_at,
           max(ends_at) FILTER (WHERE kind <> 'membership_ended') AS ends_at,
           min(seq) FILTER (WHERE kind = 'membership_ended') AS ended_seq
    FROM numbered
    GROUP BY customer_id, period
), grid AS (
    SELECT h.plan,
           generate_series(date_trunc('month', min(h.at) AT TIME ZONE 'UTC')::date,
                           date_trunc('month', min(k.as_of) AT TIME ZONE 'UTC')::date,
                           interval '1 month')::date AS month
    FROM membership_history h CROSS JOIN ledger_clock k
    GROUP BY h.plan
), instants AS (
    -- the instant a month's active members are counted at
    SELECT g.plan, g.month, k.as_of,
           least((g.month + interval '1 month')::timestamp AT TIME ZONE 'UTC', k.as_of) AS at
    FROM grid g CROSS JOIN ledger_clock k
), sales AS (
    SELECT plan, date_trunc('month', at AT TIME ZONE 'UTC')::date AS month,
           count(*) FILTER (WHERE kind = 'membership_started') AS started,
           count(*) FILTER (WHERE kind = 'membership_renewed') AS renewals,
           coalesce(sum(paid), 0) AS fees
    FROM membership_history
    GROUP BY 1, 2
), ends AS (
    -- by the instant the end passed, not when the customer's next event saw it pass
    SELECT p.plan, date_trunc('month', p.ends_at AT TIME ZONE 'UTC')::date AS month,
           count(*) AS ended
    FROM periods p CROSS JOIN ledger_clock k
    WHERE p.ends_at <= k.as_of
    GROUP BY 1, 2
), orders AS (
    -- plan null: the customer held no plan when it ordered
    SELECT p.plan, date_trunc('month', s.at AT TIME ZONE 'UTC')::date AS month,
           count(*) AS orders, sum(s.amount) AS spend
    FROM customer_spend s
    LEFT JOIN periods p ON p.customer_id = s.customer_id AND p.started_seq < s.seq
                       AND (p.ended_seq IS NULL OR s.seq < p.ended_seq)
    WHERE s.kind = 'order_placed'
    GROUP BY 1, 2
), active AS (
    SELECT i.plan, i.month, count(DISTINCT p.customer_id) AS active_members
    FROM instants i
    JOIN periods p ON p.plan = i.plan AND p.started_at <= i.at AND p.ends_at > i.at
    GROUP BY 1, 2
)
SELECT i.plan,
       i.month,
       i.as_of,
       coalesce(a.active_members, 0) AS active_members,
       coalesce(s.started, 0) AS started,
       coalesce(s.renewals, 0) AS renewals,
       coalesce(e.ended, 0) AS ended,
       coalesce(s.fees, 0) AS fees,
       coalesce(m.orders, 0) AS member_orders,
       coalesce(m.spend, 0) AS member_spend,
       round(m.spend / m.orders, 2) AS member_aov,
       coalesce(n.orders, 0) AS non_member_orders,
       coalesce(n.spend, 0) AS non_member_spend,
       round(n.spend / n.orders, 2) AS non_member_aov
FROM instants i
LEFT JOIN active a ON a.plan = i.plan AND a.month = i.month
LEFT JOIN sales s ON s.plan = i.plan AND s.month = i.month
LEFT JOIN ends e ON e.plan = i.plan AND e.month = i.month
LEFT JOIN orders m ON m.plan = i.plan AND m.month = i.month
LEFT JOIN orders n ON n.plan IS NULL AND n.month = i.month;
