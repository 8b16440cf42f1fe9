"""A browser tab's token (:mod:`studio.browser_tab`): kept across a reload, new for a new tab, and new for
a tab opened from a copied address while the tab it was copied from is still open."""

from __future__ import annotations

from studio.browser_tab import TOKEN, claim, owner_of


def never(session: str) -> bool:
    return False


def test_a_new_tab_gets_a_token_and_a_reload_keeps_it() -> None:
    holders: dict[str, str] = {}
    first = claim(None, "s1", never, holders)
    assert TOKEN.fullmatch(first) and holders == {first: "s1"}
    again = claim(first, "s2", never, holders)  # the reload's new session, the old one disconnected
    assert again == first and holders[first] == "s2"
    assert claim(None, "s3", never, holders) != first  # another tab, opened on the app's address
    assert owner_of(first) == f"app:{first}"


def test_a_copied_address_gets_its_own_token_while_the_first_tab_is_open() -> None:
    holders: dict[str, str] = {}
    first = claim(None, "s1", never, holders)
    copied = claim(first, "s2", lambda session: session == "s1", holders)  # s1 is still connected
    assert copied != first and TOKEN.fullmatch(copied)
    assert holders == {first: "s1", copied: "s2"}
    assert claim(first, "s1", lambda session: True, holders) == first  # a session keeps its own token


def test_a_token_not_made_here_is_replaced() -> None:
    holders: dict[str, str] = {}
    for bad in ("", "xyz", "0A1B2C3D", "0a1b2c3d9", "../etc"):
        assert TOKEN.fullmatch(claim(bad, "s1", never, holders)), bad
        assert bad not in holders
