"""search fold: contact search ignores accents (Trần is found by "tran", Đức by "duc")

`mktx_fold(text)`: lowercase, and Latin letters with diacritics down to their base letters
(`đ` → d, `ø` → o, `ł` → l, `ß` → ss, `æ` → ae), combining marks removed. Plain SQL over
`translate()`, `replace()` and `lower()`: no extension (the embedded PostgreSQL has no
`unaccent`). `contacts.search_vector` becomes `mktx_search_vector(username, display_name)`
(PL/pgSQL around mktx_fold: see SEARCH_VECTOR_FUNCTION; username and display name folded apart:
usernames are ASCII and skip the tables), and the search folds its terms with mktx_fold, so both
sides always agree. The column cannot be altered in place (PostgreSQL < 17),
so it is dropped and added again (one table rewrite, ACCESS EXCLUSIVE meanwhile: ~16 s for
1,000,000 contacts on a 2-CPU machine), and the three indexes that hold it are rebuilt.

The table: every letter of Latin-1 Supplement, Latin Extended-A, Latin Extended-B and Latin
Extended Additional that has a base letter — its NFKD decomposition without combining marks when
that is ASCII (ǆ → dz), else the letter its Unicode name is built on (LATIN SMALL LETTER L WITH
STROKE → l; SHARP S → ss, AE → ae, OE → oe, THORN → th, ETH → d, DOTLESS I → i, LONG S → s) —
plus the lowercase form of each when it lies outside those blocks (Ɓ → ɓ), since lower() runs
first. Generated once with Python's unicodedata and written here literally;
tests/contacts/test_search_fold.py derives it again and compares, letter by letter, with this
file and with what the database function returns.

Speed (it runs for every row the import writes): `translate()` looks each character up in its
whole list, so the list is split. ASCII strings (every username) only go through lower(). The
rest go through a short list first (COMMON: the lowercase letters of Latin-1 and of Vietnamese,
which is all most names here are written with); only a string that still holds one of the other
letters (REST, capitals included: lower() leaves them alone under the C locale) pays for the long
list. Folding adds ~2.5 µs per contact written against ~20 µs for the long list on every string.

Revision ID: 0008_search_fold
Revises: 0007_campaign_messages
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_search_fold"
down_revision: str | None = "0007_campaign_messages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# base letter: the letters that fold to it.
COMMON: dict[str, str] = {
    "a": "àáâãäåăạảấầẩẫậắằẳẵặ",
    "c": "ç",
    "d": "ðđ",
    "e": "èéêëẹẻẽếềểễệ",
    "i": "ìíîïĩỉị",
    "n": "ñ",
    "o": "òóôõöøơọỏốồổỗộớờởỡợ",
    "u": "ùúûüũưụủứừửữự",
    "y": "ýÿỳỵỷỹ",
}
REST: dict[str, str] = {
    "a": "ÀÁÂÃÄÅĀāĂĄąǍǎǞǟǠǡǺǻȀȁȂȃȦȧȺḀḁẚẠẢẤẦẨẪẬẮẰẲẴẶⱥ",
    "b": "ƀƁƂƃɃɓḂḃḄḅḆḇ",
    "c": "ÇĆćĈĉĊċČčƇƈȻȼḈḉ",
    "d": "ÐĎďĐƉƊƋƌȡɖɗḊḋḌḍḎḏḐḑḒḓ",
    "e": "ÈÉÊËĒēĔĕĖėĘęĚěȄȅȆȇȨȩɆɇḔḕḖḗḘḙḚḛḜḝẸẺẼẾỀỂỄỆ",
    "f": "ƑƒḞḟ",
    "g": "ĜĝĞğĠġĢģƓǤǥǦǧǴǵɠḠḡ",
    "h": "ĤĥĦħȞȟḢḣḤḥḦḧḨḩḪḫẖ",
    "i": "ÌÍÎÏĨĪīĬĭĮįİıƗǏǐȈȉȊȋɨḬḭḮḯỈỊ",
    "j": "ĴĵǰȷɈɉ",
    "k": "ĶķƘƙǨǩḰḱḲḳḴḵ",
    "l": "ĹĺĻļĽľĿŀŁłƚȴȽḶḷḸḹḺḻḼḽ",
    "m": "ḾḿṀṁṂṃ",
    "n": "ÑŃńŅņŇňƝƞǸǹȠȵɲṄṅṆṇṈṉṊṋ",
    "o": "ÒÓÔÕÖØŌōŎŏŐőƟƠǑǒǪǫǬǭǾǿȌȍȎȏȪȫȬȭȮȯȰȱɵṌṍṎṏṐṑṒṓỌỎỐỒỔỖỘỚỜỞỠỢ",
    "p": "ƤƥṔṕṖṗ",
    "q": "Ɋɋ",
    "r": "ŔŕŖŗŘřȐȑȒȓɌɍṘṙṚṛṜṝṞṟ",
    "s": "ŚśŜŝŞşŠšſȘșȿṠṡṢṣṤṥṦṧṨṩẛẜẝ",
    "t": "ŢţŤťŦŧƫƬƭƮȚțȶȾʈṪṫṬṭṮṯṰṱẗⱦ",
    "u": "ÙÚÛÜŨŪūŬŭŮůŰűŲųƯǓǔǕǖǗǘǙǚǛǜȔȕȖȗɄʉṲṳṴṵṶṷṸṹṺṻỤỦỨỪỬỮỰ",
    "v": "ƲʋṼṽṾṿ",
    "w": "ŴŵẀẁẂẃẄẅẆẇẈẉẘ",
    "x": "ẊẋẌẍ",
    "y": "ÝŶŷŸƳƴȲȳɎɏẎẏẙỲỴỶỸỾỿ",
    "z": "ŹźŻżŽžƵƶȤȥɀẐẑẒẓẔẕ",
    # Two-letter folds: the translate brings each family to one letter, replace() expands it.
    "ß": "ẞ",
    "æ": "ÆǢǣǼǽ",
    "þ": "Þ",
    "ĳ": "Ĳ",
    "œ": "Œ",
    "ǆ": "ǄǅǱǲǳ",
    "ǉ": "Ǉǈ",
    "ǌ": "Ǌǋ",
}
TWO_LETTERS: dict[str, str] = {
    "ß": "ss",
    "æ": "ae",
    "þ": "th",
    "ĳ": "ij",
    "œ": "oe",
    "ǆ": "dz",
    "ǉ": "lj",
    "ǌ": "nj",
}
# Combining Diacritical Marks (U+0300..U+036F), from decomposed input such as "e" + U+0301:
# removed (translate() drops the characters its target list has no counterpart for).
MARKS = "".join(chr(code) for code in range(0x0300, 0x0370))


def _pairs(table: dict[str, str]) -> tuple[str, str]:
    return "".join(table.values()), "".join(base * len(letters) for base, letters in table.items())


def fold_function_sql() -> str:
    common_from, common_to = _pairs(COMMON)
    rest_from, rest_to = _pairs(REST)
    gate = rest_from + "".join(TWO_LETTERS) + MARKS
    full = (
        f"translate(translate(lower($1), '{common_from}', '{common_to}'), "
        f"'{rest_from}{MARKS}', '{rest_to}')"
    )
    for letter, letters in TWO_LETTERS.items():
        full = f"replace({full}, '{letter}', '{letters}')"
    return f"""
        CREATE FUNCTION mktx_fold(text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN CASE
            WHEN octet_length($1) = length($1) THEN lower($1)
            WHEN lower($1) ~ '[{gate}]' THEN {full}
            ELSE translate(lower($1), '{common_from}', '{common_to}')
        END
    """


# The column's expression is a PL/pgSQL function rather than the folding written out: a
# generated column's expression is prepared again by every statement that writes a row, and
# mktx_fold inlined there (with its long character tables) cost ~65 µs per name per statement,
# doubling the database's work for a webhook event (one contact upsert each). PL/pgSQL keeps
# its plan for the session: the per-statement cost is a function call.
SEARCH_VECTOR_FUNCTION = """
    CREATE FUNCTION mktx_search_vector(username text, display_name text) RETURNS tsvector
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
    BEGIN
        RETURN to_tsvector('simple', mktx_fold(coalesce(username, '')) || ' '
            || mktx_fold(coalesce(display_name, '')));
    END
    $$
"""
FOLDED = "mktx_search_vector(username, display_name)"
UNFOLDED = "to_tsvector('simple', coalesce(username, '') || ' ' || coalesce(display_name, ''))"


def _replace_search_vector(expression: str) -> None:
    op.execute("DROP INDEX ix_contacts_scope_filters")
    op.execute("DROP INDEX ix_contacts_merchant_list")
    op.execute("DROP INDEX ix_contacts_search")
    op.execute("ALTER TABLE contacts DROP COLUMN search_vector")
    op.execute(
        f"ALTER TABLE contacts ADD COLUMN search_vector tsvector "
        f"GENERATED ALWAYS AS ({expression}) STORED"
    )
    op.execute("CREATE INDEX ix_contacts_search ON contacts USING gin (search_vector)")
    op.execute(
        "CREATE INDEX ix_contacts_merchant_list ON contacts "
        "(merchant_id, last_interaction_at DESC NULLS LAST, id) "
        "INCLUDE (account_id, tags, search_vector)"
    )
    op.execute(
        "CREATE INDEX ix_contacts_scope_filters ON contacts USING gin "
        "((ARRAY['m:' || merchant_id, 'a:' || account_id::text]), tags, search_vector)"
    )
    # The new column has no statistics yet, and a rewrite does not prompt autovacuum to
    # gather them: the planner's estimates for searches need them.
    op.execute("ANALYZE contacts")


def upgrade() -> None:
    op.execute(fold_function_sql())
    op.execute(SEARCH_VECTOR_FUNCTION)
    _replace_search_vector(FOLDED)


def downgrade() -> None:
    _replace_search_vector(UNFOLDED)
    op.execute("DROP FUNCTION mktx_search_vector(text, text)")
    op.execute("DROP FUNCTION mktx_fold(text)")
