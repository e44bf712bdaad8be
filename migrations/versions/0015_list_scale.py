"""list scale: contact searches find their words in the GIN index by exact keys, not prefixes

A word-prefix search (`tran` finds Trần, trang, tranthianh42) over `search_vector` is a GIN
*partial match*: every key starting with the prefix is read and its rows gathered into a
bitmap before anything is intersected. Usernames make tens of thousands of such keys
(`tran` has ~24,000 among 1,000,000 contacts), so a two-word search (`trần thị`) spent ~80 ms
in the index alone, whatever it finally matched.

`mktx_word_prefixes(search_vector)` lists, for each word of the contact, its first 1 to
`PREFIX_LENGTH` letters (`nguyen` → n, ng, ngu, nguy, nguye, nguyen): a search word then is one
exact key (its own first `PREFIX_LENGTH` letters), which GIN intersects with the merchant's key,
the tags and the other words without gathering anything (~8 ms for `trần thị`). A longer word
matches on its first `PREFIX_LENGTH` letters in the index and on the whole word in the recheck
(services/contacts/listing.py). That column replaces `search_vector` in
`ix_contacts_scope_filters`; the list index (`ix_contacts_merchant_list`, which INCLUDEs
`search_vector`) is unchanged.

`mktx_prefix_keys(term)` and `mktx_prefix_query(term)` turn a search term into those keys and
into the tsquery `'word':* & ...`, folded and split exactly as the contacts' words are
(mktx_fold and the 'simple' parser, migration 0008). They are IMMUTABLE, so the planner
evaluates them on the bound term and estimates the match from the column statistics (an
InitPlan, as before, left it the default 0.5 % guess — which the lists' estimated totals now
rely on).

Building the index reads every contact: ~15 s per 1,000,000 contacts on 2 CPUs, during which
CREATE INDEX's SHARE lock lets reads of `contacts` go on and makes writes wait — run it in a
quiet hour. Its size is ~36 MB per 1,000,000 contacts (the index it replaces: ~50 MB).

Revision ID: 0015_list_scale
Revises: 0014_assistant
"""

from __future__ import annotations

from alembic import op

revision: str = "0015_list_scale"
down_revision: str | None = "0014_assistant"
branch_labels = None
depends_on = None

PREFIX_LENGTH = 6  # services/contacts/listing.py reads it from the keys the function makes

WORD_PREFIXES_FUNCTION = f"""
    CREATE FUNCTION mktx_word_prefixes(words tsvector) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT AS $$
    DECLARE
        word text;
        keys text[] := '{{}}';
    BEGIN
        -- Duplicates are harmless: GIN keeps each key of a row once.
        FOREACH word IN ARRAY tsvector_to_array(words) LOOP
            FOR n IN 1..least(length(word), {PREFIX_LENGTH}) LOOP
                keys := keys || left(word, n);
            END LOOP;
        END LOOP;
        RETURN keys;
    END
    $$
"""

# The term's words as mktx_search_vector makes a contact's (folded, split by the same parser).
_TERM_WORDS = "unnest(to_tsvector('simple', mktx_fold(term)))"

PREFIX_KEYS_FUNCTION = f"""
    CREATE FUNCTION mktx_prefix_keys(term text) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN ARRAY(SELECT DISTINCT left(lexeme, {PREFIX_LENGTH}) FROM {_TERM_WORDS})
"""

# Each word quoted as a prefix lexeme ('o''brien':*): nothing typed is read as tsquery syntax.
PREFIX_QUERY_FUNCTION = f"""
    CREATE FUNCTION mktx_prefix_query(term text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN (
        SELECT to_tsquery('simple', coalesce(string_agg(
            '''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || ''':*', ' & '), ''))
        FROM {_TERM_WORDS}
    )
"""

_SCOPE = "(ARRAY['m:' || merchant_id, 'a:' || account_id::text])"


def upgrade() -> None:
    op.execute(WORD_PREFIXES_FUNCTION)
    op.execute(PREFIX_KEYS_FUNCTION)
    op.execute(PREFIX_QUERY_FUNCTION)
    op.execute("DROP INDEX ix_contacts_scope_filters")
    op.execute(
        "CREATE INDEX ix_contacts_scope_filters ON contacts USING gin "
        f"({_SCOPE}, tags, mktx_word_prefixes(search_vector))"
    )
    # Statistics of the new expression, for the planner's estimates of word matches.
    op.execute("ANALYZE contacts")


def downgrade() -> None:
    op.execute("DROP INDEX ix_contacts_scope_filters")
    op.execute(
        f"CREATE INDEX ix_contacts_scope_filters ON contacts USING gin ({_SCOPE}, tags, "
        "search_vector)"
    )
    op.execute("DROP FUNCTION mktx_prefix_query(text)")
    op.execute("DROP FUNCTION mktx_prefix_keys(text)")
    op.execute("DROP FUNCTION mktx_word_prefixes(tsvector)")
