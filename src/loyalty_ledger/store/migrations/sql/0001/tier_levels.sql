CREATE VIEW tier_levels AS
SELECT NULL::integer AS rank,
       NULL::text    AS name,
       NULL::numeric AS min_spend,
       NULL::numeric AS multiplier,
       NULL::integer AS window_days
WHERE false;
