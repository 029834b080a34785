CREATE TABLE tier_moves (
    month   date NOT NULL,
    tier    text NOT NULL,
    entered bigint NOT NULL,
    exited  bigint NOT NULL,
    PRIMARY KEY (month, tier)
);
