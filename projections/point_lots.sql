-- point_lots: each customer's open point lots (what is left of each credit, and when it
-- expires) and its debt, replayed from the ledger by PROGRAM.md's lot rules: a credit of
-- any kind (credit, adjustment_credit, a transfer_in part with its own expiry) pays debt
-- first (its debt_settled entry follows it); a redemption, reversal, adjustment_debit or
-- transfer_out takes from the lot that expires first (then the oldest), what is missing
-- becomes debt (a return only); an expiry entry empties the lots with its expires_at.
-- Row lot_seq = 0 holds the debt. Invariant (tested): sum(remaining) of lots - debt =
-- balance.balance.

-- create
CREATE TABLE point_lots (
    customer_id text NOT NULL,
    lot_seq     bigint NOT NULL,
    earned_at   timestamptz,
    expires_at  timestamptz,
    remaining   bigint NOT NULL CHECK (remaining > 0),
    PRIMARY KEY (customer_id, lot_seq),
    CONSTRAINT point_lots_points_limit CHECK (remaining <= 1000000000000000)  -- PROGRAM.md "Bounds"
);
CREATE INDEX point_lots_expires_at ON point_lots (expires_at);

-- A step at once, customer by customer. A customer with only credits in the step just gets
-- new lots. For the others, while every lot a debit can reach expires no earlier than the
-- lots before it (the usual case: a credit expires a fixed span after it is earned), the
-- lots form a queue: the lots in place in debit order, then the step's new lots in seq
-- order; which lot a debit takes from then follows from running sums alone. The lots' total
-- after each entry is a running sum floored at 0 (Lindley's recursion: the sum minus the
-- lowest it has been below 0), and what the floor cuts off is the debt a return made. A
-- customer whose step breaks the queue, or would fail an assertion, is replayed entry by
-- entry instead (point_lots_replay): the same rows either way.
CREATE OR REPLACE FUNCTION point_lots_apply(after_seq bigint, upto_seq bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    replayed text[];
BEGIN
    WITH entry AS (
        SELECT customer_id, seq, kind, points, occurred_at, expires_at,
               kind IN ('credit', 'adjustment_credit', 'transfer_in') AS credit,
               kind IN ('redemption', 'reversal', 'expiry', 'adjustment_debit',
                        'transfer_out') AS debit
        FROM ledger
        WHERE seq > after_seq AND seq <= upto_seq
          AND kind IN ('credit', 'adjustment_credit', 'transfer_in', 'debt_settled',
                       'redemption', 'reversal', 'expiry', 'adjustment_debit', 'transfer_out')
    ),
    -- customers whose lots in place the step reads: a debit's or a debt_settled's
    debtor AS (
        SELECT DISTINCT customer_id FROM entry WHERE NOT credit
    ),
    fresh AS (
        INSERT INTO point_lots (customer_id, lot_seq, earned_at, expires_at, remaining)
        SELECT customer_id, seq, occurred_at, expires_at, points
        FROM entry
        WHERE customer_id NOT IN (SELECT customer_id FROM debtor)
    ),
    -- OFFSET 0 keeps the lateral apart: one index lookup per debtor, never a scan of all lots
    opening AS (
        SELECT d.customer_id, l.lot_seq, l.expires_at, l.remaining
        FROM debtor d
        CROSS JOIN LATERAL (
            SELECT lot_seq, expires_at, remaining
            FROM point_lots
            WHERE customer_id = d.customer_id
            OFFSET 0
        ) l
    ),
    opened AS (
        SELECT customer_id,
               coalesce(sum(remaining) FILTER (WHERE lot_seq > 0), 0)::bigint AS lots,
               coalesce(sum(remaining) FILTER (WHERE lot_seq = 0), 0)::bigint AS debt,
               max(coalesce(expires_at, 'infinity')) FILTER (WHERE lot_seq > 0) AS latest
        FROM opening
        GROUP BY customer_id
    ),
    -- unfloored: the lots' total after the entry, were it allowed below 0
    running AS (
        SELECT e.customer_id, e.seq, e.kind, e.points, e.occurred_at, e.expires_at, e.credit,
               e.debit, coalesce(o.debt, 0) AS debt0, o.latest,
               coalesce(o.lots, 0)
                 + sum(CASE WHEN e.credit THEN e.points ELSE -e.points END) OVER w AS unfloored,
               sum(CASE WHEN e.debit THEN e.points ELSE 0 END) OVER w AS debited,
               sum(CASE WHEN e.kind = 'debt_settled' THEN e.points ELSE 0 END) OVER w
                 AS settled,
               lag(e.kind) OVER w AS previous_kind, lag(e.points) OVER w AS previous_points,
               lead(e.kind) OVER w AS next_kind, lead(e.points) OVER w AS next_points,
               max(CASE WHEN e.credit THEN coalesce(e.expires_at, 'infinity') END)
                 OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS latest_new,
               max(e.seq) FILTER (WHERE e.debit) OVER (PARTITION BY e.customer_id) AS last_debit
        FROM entry e
        JOIN debtor d ON d.customer_id = e.customer_id
        LEFT JOIN opened o ON o.customer_id = e.customer_id
        WINDOW w AS (PARTITION BY e.customer_id ORDER BY e.seq)
    ),
    -- owed: the debt the debits made so far, before and after the entry
    owing AS (
        SELECT r.*,
               -least(0, min(r.unfloored) OVER w)::bigint AS owed_after,
               -least(0, min(r.unfloored)
                   OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))::bigint AS owed_before
        FROM running r
        WINDOW w AS (PARTITION BY r.customer_id ORDER BY r.seq)
    ),
    -- queue_after: how far into the queue of lots the debits have taken, after the entry
    flow AS (
        SELECT o.*, o.debited - o.owed_after AS queue_after,
               CASE WHEN o.debit THEN o.points - (o.owed_after - o.owed_before) ELSE 0 END
                 AS taken
        FROM owing o
    ),
    queue AS (
        SELECT customer_id, lot_seq, NULL::timestamptz AS earned_at, expires_at,
               remaining AS size, false AS new
        FROM opening
        WHERE lot_seq > 0
        UNION ALL
        -- the debt_settled right after a credit shrinks the credit's lot
        SELECT customer_id, seq, occurred_at, expires_at,
               points - CASE WHEN next_kind = 'debt_settled' THEN next_points ELSE 0 END, true
        FROM flow
        WHERE credit
    ),
    placed AS (
        SELECT q.*,
               sum(q.size) OVER (PARTITION BY q.customer_id
                                 ORDER BY q.new,
                                          CASE WHEN NOT q.new
                                               THEN coalesce(q.expires_at, 'infinity') END,
                                          q.lot_seq
                                 ROWS UNBOUNDED PRECEDING)::bigint - q.size AS start
        FROM queue q
    ),
    -- the queue does not hold: a lot jumps the queue, an expiry reaches a lot with another
    -- expires_at, or the replay would assert (debt from other than a return, a lot short)
    unqueued AS (
        SELECT customer_id
        FROM flow
        WHERE (debit AND kind <> 'reversal' AND owed_after > owed_before)
           OR (credit AND points = 0)
           OR (credit AND seq < last_debit
               AND coalesce(expires_at, 'infinity') < greatest(latest, latest_new))
           OR (kind = 'debt_settled'
               AND (previous_kind IS NULL
                    OR previous_kind NOT IN ('credit', 'adjustment_credit', 'transfer_in')
                    OR points > previous_points
                    OR points > debt0 + owed_after - (settled - points)))
        UNION
        SELECT f.customer_id
        FROM flow f
        JOIN placed p ON p.customer_id = f.customer_id
                     AND p.start < f.queue_after AND p.start + p.size > f.queue_after - f.taken
        WHERE f.kind = 'expiry' AND p.expires_at IS DISTINCT FROM f.expires_at
    ),
    customer AS (
        SELECT customer_id, debt0,
               coalesce(sum(points) FILTER (WHERE debit), 0) - max(owed_after) AS taken,
               debt0 + max(owed_after)
                 - coalesce(sum(points) FILTER (WHERE kind = 'debt_settled'), 0) AS debt
        FROM flow
        WHERE customer_id NOT IN (SELECT customer_id FROM unqueued)
        GROUP BY customer_id, debt0
    ),
    -- before: the row in place (NULL: none); after: what is left of it (0: no row)
    outcome AS (
        SELECT p.customer_id, p.lot_seq, p.earned_at, p.expires_at,
               CASE WHEN NOT p.new THEN p.size END AS before,
               p.size - least(p.size, greatest(0, c.taken - p.start)) AS after
        FROM placed p
        JOIN customer c ON c.customer_id = p.customer_id
        WHERE p.new OR p.start < c.taken
        UNION ALL
        SELECT customer_id, 0, NULL, NULL, nullif(debt0, 0), debt
        FROM customer
        WHERE debt0 <> debt
    ),
    -- an upsert finds each changed row by its key, as the replay did, not by a join
    written AS (
        INSERT INTO point_lots AS l (customer_id, lot_seq, earned_at, expires_at, remaining)
        SELECT customer_id, lot_seq, earned_at, expires_at, after
        FROM outcome
        WHERE after > 0 AND after IS DISTINCT FROM before
        ON CONFLICT (customer_id, lot_seq) DO UPDATE SET remaining = excluded.remaining
    ),
    deleted AS (
        DELETE FROM point_lots l
        USING outcome o
        WHERE l.customer_id = o.customer_id AND l.lot_seq = o.lot_seq
          AND o.before IS NOT NULL AND o.after = 0
    )
    SELECT array_agg(customer_id) INTO replayed FROM unqueued;
    IF replayed IS NOT NULL THEN
        PERFORM point_lots_replay(after_seq, upto_seq, replayed);
    END IF;
END
$$;

-- Entry by entry in seq order: which lot a debit takes from depends on the order.
CREATE OR REPLACE FUNCTION point_lots_replay(after_seq bigint, upto_seq bigint,
                                             customers text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    e record;
    newest bigint;
BEGIN
    FOR e IN
        SELECT customer_id, seq, kind, points, occurred_at, expires_at
        FROM ledger
        WHERE seq > after_seq AND seq <= upto_seq AND customer_id = ANY(customers)
          AND kind IN ('credit', 'adjustment_credit', 'transfer_in', 'debt_settled',
                       'redemption', 'reversal', 'expiry', 'adjustment_debit', 'transfer_out')
        ORDER BY seq
    LOOP
        IF e.kind IN ('credit', 'adjustment_credit', 'transfer_in') THEN
            INSERT INTO point_lots (customer_id, lot_seq, earned_at, expires_at, remaining)
            VALUES (e.customer_id, e.seq, e.occurred_at, e.expires_at, e.points);
        ELSIF e.kind = 'debt_settled' THEN
            -- the credit just before paid this much debt: its lot is smaller by as much
            SELECT max(lot_seq) INTO newest FROM point_lots WHERE customer_id = e.customer_id;
            PERFORM point_lots_take(e.customer_id, newest, e.points);
            PERFORM point_lots_take(e.customer_id, 0, e.points);
        ELSE
            PERFORM point_lots_debit(e.customer_id, e.kind, e.points, e.expires_at);
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION point_lots_take(customer text, lot bigint, points bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM point_lots WHERE customer_id = customer AND lot_seq = lot AND remaining = points;
    IF NOT FOUND THEN
        UPDATE point_lots SET remaining = remaining - points
        WHERE customer_id = customer AND lot_seq = lot AND remaining > points;
        ASSERT FOUND, 'point_lots: lot ' || lot || ' of ' || customer || ' is short';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION point_lots_debit(customer text, entry_kind text, points bigint,
                                            lot_expiry timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    lot record;
    wanted bigint := points;
    taken bigint;
BEGIN
    FOR lot IN
        SELECT lot_seq, remaining FROM point_lots
        WHERE customer_id = customer AND lot_seq > 0
          AND (entry_kind <> 'expiry' OR expires_at = lot_expiry)
        ORDER BY expires_at NULLS LAST, lot_seq
    LOOP
        EXIT WHEN wanted = 0;
        taken := least(wanted, lot.remaining);
        PERFORM point_lots_take(customer, lot.lot_seq, taken);
        wanted := wanted - taken;
    END LOOP;
    IF wanted > 0 THEN
        -- only a return can take more than the lots hold (PROGRAM.md: debt)
        ASSERT entry_kind = 'reversal', 'point_lots: ' || entry_kind || ' of ' || customer
            || ' exceeds its lots';
        INSERT INTO point_lots AS d (customer_id, lot_seq, remaining)
        VALUES (customer, 0, wanted)
        ON CONFLICT (customer_id, lot_seq) DO UPDATE SET remaining = d.remaining + excluded.remaining;
    END IF;
END
$$;

-- only the projection runner replays: analysts and other roles may not call these
REVOKE EXECUTE ON FUNCTION point_lots_apply(bigint, bigint),
    point_lots_replay(bigint, bigint, text[]), point_lots_take(text, bigint, bigint),
    point_lots_debit(text, text, bigint, timestamptz) FROM PUBLIC;

-- apply
SELECT point_lots_apply(%(after)s, %(upto)s);
