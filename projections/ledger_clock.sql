-- ledger_clock: the ledger's latest event instant and seq, the "as of" of every analyst
-- view. Never now(): the ledger's time comes from its events, so results reproduce.

-- create
CREATE TABLE ledger_clock (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    as_of timestamptz NOT NULL,
    seq   bigint NOT NULL
);

-- apply
INSERT INTO ledger_clock AS c (id, as_of, seq)
SELECT true, max(occurred_at), max(seq)
FROM ledger
WHERE seq > %(after)s AND seq <= %(upto)s
HAVING count(*) > 0
ON CONFLICT (id) DO UPDATE SET
    as_of = greatest(c.as_of, excluded.as_of),
    seq   = greatest(c.seq, excluded.seq);
