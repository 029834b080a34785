"""Input sources: where raw lines come from and how far each one has been consumed."""
