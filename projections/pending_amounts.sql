-- pending_amounts: one row per order whose points waited out the return window
-- ([pending] days): when they mature, the points it was created with, and how many of
-- them matured (were credited) or were cancelled by a return. What is left is still
-- pending: points - matured - cancelled. Feeds pending_points.

-- create
CREATE TABLE pending_amounts (
    customer_id text NOT NULL,
    order_id    text NOT NULL,
    matures_at  timestamptz NOT NULL,
    points      bigint NOT NULL CHECK (points > 0),
    matured     bigint NOT NULL CHECK (matured >= 0),
    cancelled   bigint NOT NULL CHECK (cancelled >= 0),
    PRIMARY KEY (customer_id, order_id),
    -- paired with the engine: a pending amount never gives more than it was made with
    CONSTRAINT pending_amounts_left CHECK (matured + cancelled <= points)
);
CREATE INDEX pending_amounts_matures_at ON pending_amounts (matures_at);

-- apply
-- The new row is the whole new state (the row in place plus the step's entries), so its
-- CHECKs hold on insert as on update; an order's entries may span steps.
INSERT INTO pending_amounts AS p (customer_id, order_id, matures_at, points, matured, cancelled)
SELECT d.customer_id, d.order_id,
       coalesce(q.matures_at, d.matures_at),
       coalesce(q.points, 0) + d.points,
       coalesce(q.matured, 0) + d.matured,
       coalesce(q.cancelled, 0) + d.cancelled
FROM (
    SELECT customer_id, ref AS order_id,
           max(expires_at) FILTER (WHERE kind = 'pending_created') AS matures_at,
           coalesce(sum(points) FILTER (WHERE kind = 'pending_created'), 0) AS points,
           coalesce(sum(points) FILTER (WHERE kind = 'pending_matured'), 0) AS matured,
           coalesce(sum(points) FILTER (WHERE kind = 'pending_cancelled'), 0) AS cancelled
    FROM ledger
    WHERE seq > %(after)s AND seq <= %(upto)s
      AND kind IN ('pending_created', 'pending_matured', 'pending_cancelled')
    GROUP BY customer_id, ref
) d
LEFT JOIN pending_amounts q ON q.customer_id = d.customer_id AND q.order_id = d.order_id
ON CONFLICT (customer_id, order_id) DO UPDATE SET
    points    = excluded.points,
    matured   = excluded.matured,
    cancelled = excluded.cancelled;
