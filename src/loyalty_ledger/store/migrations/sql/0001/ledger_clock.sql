CREATE TABLE ledger_clock (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    as_of timestamptz NOT NULL,
    seq   bigint NOT NULL
);
