"""An event-sourced customer-loyalty ledger: input -> decision -> ledger -> projections."""
