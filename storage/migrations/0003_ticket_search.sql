-- Version 3: ticket search served by indexes (storage/tickets.py, TicketFilters.search).

-- Substring search without pg_trgm (the embedded PostgreSQL has no contrib modules): the
-- three-character pieces of a text, indexed with GIN. `search_grams(x) @> search_grams(needle)` holds
-- whenever x contains needle (needles of 3 characters or more), so it narrows a LIKE '%needle%', which
-- then rechecks the few rows found.
CREATE FUNCTION search_grams(text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT array(SELECT substr($1, i, 3) FROM generate_series(1, length($1) - 2) AS i)
$$;

CREATE INDEX contacts_name_grams_idx ON contacts USING gin (search_grams(lower(name)));
CREATE INDEX contacts_number_grams_idx ON contacts USING gin (search_grams(number));

-- The tickets' last message is searched by word prefixes: every word of the search starts a word of the
-- message ("pedi" finds "pedido"; "dido" does not). A full-text index costs the intake little on each
-- message, where a trigram one would cost several times more.
CREATE FUNCTION search_prefix_query(text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT string_agg('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || ''':*', ' & ')::tsquery
    FROM unnest(to_tsvector('simple', $1))
$$;

CREATE INDEX tickets_last_message_words_idx ON tickets USING gin (to_tsvector('simple', last_message));
