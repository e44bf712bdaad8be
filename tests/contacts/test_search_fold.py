"""Accent-insensitive contact search: "tran" finds Trần, "duc" finds Đức, "strasse" finds Straße.

Over HTTP (GET /contacts?search=), then the fold itself: migration 0008's table against the rule
it was generated from (unicodedata), and the database function against the same rule.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import text

from models.account import XAccount
from models.contact import Contact
from models.db import SessionMaker
from services.core.auth import Role
from tests.conftest import Api
from tests.contacts.conftest import import_jsonl, make_account, x_user_id

REPO = Path(__file__).resolve().parents[2]

PEOPLE = {
    "vn_duc": "Trần Văn Đức",
    "vn_anh": "Nguyễn Thị Ánh",
    "plain_duc": "Duc Tran",
    "pl": "Łukasz Żółć",
    "dk": "Søren Ørsted",
    "de": "Jürgen Straße",
    "es": "José Ñúñez",
    "is": "Ægir Þórsson",
    "jp": "山田 太郎",
    "ar": "محمد علي",
    # Decomposed (NFD): letters followed by combining marks, as some keyboards send them.
    "nfd": unicodedata.normalize("NFD", "Phạm Hoài Nam"),
    "emilie": "Zed Quill",  # given an accented username below
}


async def _found(api: Api, search: str) -> set[str]:
    response = await api.get("/contacts", params={"search": search, "take": 100})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pagination"]["total"] == len(body["data"])
    return {item["username"] for item in body["data"]}


async def test_accented_names_found_by_plain_and_accented_word_prefixes(
    api: Api, account: XAccount, sessions: SessionMaker, page_plan: str
) -> None:
    await import_jsonl(
        api,
        account.id,
        [
            {"twitterUserId": x_user_id(), "username": key, "displayName": name}
            for key, name in PEOPLE.items()
        ],
    )
    # Usernames on X are ASCII (the import insists), but a stored one with accents folds too.
    async with sessions() as session:
        await session.execute(
            text(
                "UPDATE contacts SET username = 'Émilie_Côté' "
                "WHERE merchant_id = :merchant AND username = 'emilie'"
            ),
            {"merchant": api.merchant.id},
        )
        await session.commit()
    emilie = "Émilie_Côté"

    cases: list[tuple[str, set[str]]] = [
        # Vietnamese, both ways round, any case; each word a prefix, all words required.
        ("tran", {"vn_duc", "plain_duc"}),
        ("TRAN", {"vn_duc", "plain_duc"}),
        ("trần", {"vn_duc", "plain_duc"}),
        ("TRẦN", {"vn_duc", "plain_duc"}),
        ("duc", {"vn_duc", "plain_duc"}),
        ("Đức", {"vn_duc", "plain_duc"}),
        ("đứ", {"vn_duc", "plain_duc"}),
        ("van duc", {"vn_duc"}),
        ("tran van", {"vn_duc"}),
        ("nguyen thi anh", {"vn_anh"}),
        ("nguyễn", {"vn_anh"}),
        ("ANH", {"vn_anh"}),
        # The decomposed name and a decomposed query, either against the other form.
        ("pham hoai", {"nfd"}),
        ("Phạm", {"nfd"}),
        (unicodedata.normalize("NFD", "Trần"), {"vn_duc", "plain_duc"}),
        # Polish ł ż ó ć, Danish ø, German ü ß, Spanish é ñ ú, Icelandic æ þ ó.
        ("lukasz zolc", {"pl"}),
        ("ŁUKASZ", {"pl"}),
        ("zol", {"pl"}),
        ("soren", {"dk"}),
        ("ørsted", {"dk"}),
        ("SOR", {"dk"}),
        ("jurgen", {"de"}),
        ("strasse", {"de"}),
        ("straß", {"de"}),
        ("STRASSE", {"de"}),
        ("jose nunez", {"es"}),
        ("JOSÉ", {"es"}),
        ("ñú", {"es"}),
        ("aegir", {"is"}),
        ("Æg", {"is"}),
        ("thorsson", {"is"}),
        ("þór", {"is"}),
        # The username: folded like the name.
        ("emilie", {emilie}),
        ("ÉMILIE_CÔTÉ", {emilie}),
        ("cote", {emilie}),
        # Other scripts: searchable by their own text, as before.
        ("山田", {"jp"}),
        ("太郎", {"jp"}),
        ("山", {"jp"}),
        ("محمد", {"ar"}),
        ("علي", {"ar"}),
        # Still prefixes of words, not infixes; still every word.
        ("uc", set()),
        ("ran", set()),
        ("tranh", set()),
        ("duc soren", set()),
    ]
    for search, expected in cases:
        assert await _found(api, search) == expected, search

    # A renamed contact is found under its new name at once, folded.
    listed = (await api.get("/contacts", params={"search": "jurgen"})).json()["data"]
    renamed = await api.put(
        f"/contacts/{listed[0]['id']}", role=Role.agent, json={"displayName": "Đặng Hữu Phúc"}
    )
    assert renamed.status_code == 200, renamed.text
    assert await _found(api, "dang huu phuc") == {"de"}
    assert await _found(api, "jurgen") == set()


async def test_search_totals_and_tenancy_with_folded_terms(
    api: Api, other_api: Api, account: XAccount, sessions: SessionMaker
) -> None:
    foreign = await make_account(sessions, other_api.merchant.id)
    names = ["Trần An", "Tran Binh", "TRẦN Chi", "Trâm Dung"]
    await import_jsonl(
        api, account.id, [{"twitterUserId": x_user_id(), "displayName": n} for n in names]
    )
    await import_jsonl(
        other_api, foreign.id, [{"twitterUserId": x_user_id(), "displayName": "Trần Khác"}]
    )
    page = (await api.get("/contacts", params={"search": "tran", "take": 1})).json()
    assert page["pagination"]["total"] == 3 and len(page["data"]) == 1
    wider = (await api.get("/contacts", params={"search": "tra"})).json()
    assert wider["pagination"]["total"] == 4
    mine = (await api.get("/contacts", params={"search": "khac"})).json()
    assert mine["data"] == [] and mine["pagination"]["total"] == 0
    theirs = (await other_api.get("/contacts", params={"search": "khac"})).json()
    assert [c["displayName"] for c in theirs["data"]] == ["Trần Khác"]


# The fold table ---------------------------------------------------------------------------------

BLOCKS = {
    "Latin-1 Supplement": (0x0080, 0x00FF),
    "Latin Extended-A": (0x0100, 0x017F),
    "Latin Extended-B": (0x0180, 0x024F),
    "Latin Extended Additional": (0x1E00, 0x1EFF),
}
# Letters whose Unicode name is not "<letter> WITH ...".
NAMED = {
    "SHARP S": "ss",
    "AE": "ae",
    "OE": "oe",
    "THORN": "th",
    "ETH": "d",
    "DOTLESS I": "i",
    "DOTLESS J": "j",
    "LONG S": "s",
    "AFRICAN D": "d",
    "BARRED O": "o",
}
_NAME = re.compile(
    r"LATIN (?:SMALL|CAPITAL) (?:LETTER|LIGATURE) (?:SMALL )?(.+?)(?: BAR| WITH .*)?$"
)


def expected_fold(ch: str) -> str | None:
    """The base letter(s) of a Latin letter, lowercase; None when it has none (ŋ, ə, ʒ)."""
    decomposed = unicodedata.normalize("NFKD", ch)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    if base and base != ch:
        parts = [c.lower() if c.isascii() and c.isalpha() else expected_fold(c) for c in base]
        if all(parts):
            return "".join(p for p in parts if p)
    match = _NAME.match(unicodedata.name(ch, ""))
    if match is None:
        return None
    letter = match.group(1)
    if len(letter) == 1 and "A" <= letter <= "Z":
        return letter.lower()
    return NAMED.get(letter)


def latin_letters() -> list[str]:
    """The blocks' Latin letters, and the lowercase forms of those outside them (Ɓ → ɓ)."""
    letters = [
        chr(code)
        for low, high in BLOCKS.values()
        for code in range(low, high + 1)
        if unicodedata.category(chr(code)).startswith("L")
        and unicodedata.name(chr(code)).startswith("LATIN ")
    ]
    extra = {
        ch.lower()
        for ch in letters
        if expected_fold(ch) and len(ch.lower()) == 1 and ch.lower() not in letters
    }
    return letters + sorted(extra - {c for c in extra if c.isascii()})


def expected_table() -> dict[str, str]:
    table = {}
    for ch in latin_letters():
        fold = expected_fold(ch)
        if fold:
            table[ch] = fold
    return table


def _migration() -> ModuleType:
    path = REPO / "migrations" / "versions" / "0008_search_fold.py"
    spec = importlib.util.spec_from_file_location("migration_0008_search_fold", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _listed(migration: Any) -> dict[str, str]:
    """What the migration's tables fold each letter to."""
    folds: dict[str, str] = {}
    for table in (migration.COMMON, migration.REST):
        for target, letters in table.items():
            for ch in letters:
                assert ch not in folds, f"{ch!r} listed twice"
                folds[ch] = migration.TWO_LETTERS.get(target, target)
    for letter, letters in migration.TWO_LETTERS.items():
        assert letter not in folds, letter  # each family's own letter goes to replace()
        folds[letter] = letters
    return folds


def test_fold_table_matches_unicodedata() -> None:
    migration = _migration()
    listed = _listed(migration)
    expected = expected_table()
    wrong = {
        f"U+{ord(ch):04X} {unicodedata.name(ch)}": (fold, expected.get(ch))
        for ch, fold in listed.items()
        if expected.get(ch) != fold
    }
    assert wrong == {}
    missing = sorted(set(expected) - set(listed))
    assert missing == []
    # The brief's examples, and what the two-tier split relies on.
    for ch, fold in {"đ": "d", "Đ": "d", "ø": "o", "ß": "ss", "æ": "ae", "ł": "l"}.items():
        assert listed[ch] == fold
    assert all(ch.islower() for letters in migration.COMMON.values() for ch in letters)
    assert all(target.isascii() for target in migration.COMMON)
    assert "".join(map(chr, range(0x0300, 0x0370))) == migration.MARKS
    assert all(unicodedata.category(ch) == "Mn" for ch in migration.MARKS)


def test_model_computes_what_the_migration_creates() -> None:
    computed = Contact.__table__.c.search_vector.computed  # type: ignore[attr-defined]
    assert " ".join(str(computed.sqltext).split()) == " ".join(_migration().FOLDED.split())


async def test_database_fold_agrees_with_unicodedata(sessions: SessionMaker) -> None:
    expected = expected_table()
    letters = latin_letters()
    probe = text(
        'SELECT c, mktx_fold(c), mktx_fold(c COLLATE "C") FROM unnest(CAST(:chars AS text[])) AS c'
    )
    async with sessions() as session:
        rows = (await session.execute(probe, {"chars": letters})).all()
    assert len(rows) == len(letters)
    wrong = {}
    for ch, folded, folded_c in rows:
        want = expected.get(ch)
        if want is None:  # no base letter: left alone (lowercased at most)
            ok = folded in (ch, ch.lower()) and folded_c in (ch, ch.lower())
        else:  # under the C locale too, where lower() leaves non-ASCII capitals alone
            ok = folded == want == folded_c
        if not ok:
            wrong[f"U+{ord(ch):04X} {unicodedata.name(ch)}"] = (folded, folded_c, want)
    assert wrong == {}

    strings = {
        "Trần Văn ĐỨC": "tran van duc",
        unicodedata.normalize("NFD", "Trần Văn Đức"): "tran van duc",
        "Jürgen STRASSE Straße ẞ": "jurgen strasse strasse ss",
        "ÆSIR Œuvre Þór Ĳssel ǅemal": "aesir oeuvre thor ijssel dzemal",
        "Łódź Øresund": "lodz oresund",
        "plain ascii_Name 42": "plain ascii_name 42",
        "山田 太郎 محمد": "山田 太郎 محمد",
        "Ñandú 東京 Ł": "nandu 東京 l",
        "": "",
    }
    async with sessions() as session:
        for source, want in strings.items():
            got = (await session.execute(text("SELECT mktx_fold(:s)"), {"s": source})).scalar_one()
            assert got == want, source
        assert (await session.execute(text("SELECT mktx_fold(NULL)"))).scalar_one() is None
