CREATE VIEW clv_model AS
SELECT NULL::timestamptz      AS fitted_as_of,
       NULL::bigint           AS fitted_seq,
       NULL::bigint           AS customers,
       NULL::bigint           AS repeat_customers,
       NULL::double precision AS r,
       NULL::double precision AS alpha,
       NULL::double precision AS a,
       NULL::double precision AS b,
       NULL::double precision AS bgnbd_log_likelihood,
       NULL::double precision AS p,
       NULL::double precision AS q,
       NULL::double precision AS v,
       NULL::double precision AS gamma_gamma_log_likelihood
WHERE false;
