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

-- Entry by entry in seq order: which lot a debit takes from depends on the order.
CREATE OR REPLACE FUNCTION point_lots_apply(after_seq bigint, upto_seq bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    e record;
    newest bigint;
BEGIN
    FOR e IN
        SELECT customer_id, seq, kind, points, occurred_at, expires_at
        FROM ledger
        WHERE seq > after_seq AND seq <= upto_seq
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
REVOKE EXECUTE ON FUNCTION point_lots_apply(bigint, bigint), point_lots_take(text, bigint, bigint),
    point_lots_debit(text, text, bigint, timestamptz) FROM PUBLIC;

-- apply
SELECT point_lots_apply(%(after)s, %(upto)s);
