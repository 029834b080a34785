"""Projectors: read models built from the ledger in seq order, each with its checkpoint."""
