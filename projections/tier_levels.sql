-- tier_levels: the program's tier levels in rank order, with the qualification window.
-- The program lives as TOML, so `loyalty analytics refresh` (and `loyalty report`)
-- replaces this view with the live program's levels; until then it is empty.

-- create
CREATE VIEW tier_levels AS
SELECT NULL::integer AS rank,
       NULL::text    AS name,
       NULL::numeric AS min_spend,
       NULL::numeric AS multiplier,
       NULL::integer AS window_days
WHERE false;
