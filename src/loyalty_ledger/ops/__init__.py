"""Operations: ingest a file, rebuild projections, inspect dead letters."""
