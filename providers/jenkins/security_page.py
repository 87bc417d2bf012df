"""The one place Jenkins lists a user's API tokens: the user's security page (``/user/{id}/security/``, or
``/user/{id}/configure`` on older releases), rendered by ``ApiTokenProperty/config.jelly``.

Each live token is a ``div.token-list-existing-item`` holding a hidden ``<input name="tokenUuid">`` and a
``<input name="tokenName">`` text box; the template's empty "new token" row (``token-list-new-item``) is skipped.
The page shows names and uuids only, never a token value.
"""

from __future__ import annotations

from html.parser import HTMLParser


class _TokenList(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found_list = False  # the page has a token list at all (else: not a page we understand)
        self.tokens: list[tuple[str, str]] = []
        self._depth = 0  # <div> depth inside the current existing-token item; 0 = outside
        self._uuid: str | None = None
        self._name: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "div":
            if "token-list" in classes:
                self.found_list = True
            if self._depth:
                self._depth += 1
            elif "token-list-existing-item" in classes:
                self._depth, self._uuid, self._name = 1, None, None
        elif tag == "input" and self._depth:
            if a.get("name") == "tokenUuid":
                self._uuid = a.get("value", "")
            elif a.get("name") == "tokenName":
                self._name = a.get("value", "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._depth:
            self._depth -= 1
            if self._depth == 0 and self._uuid:
                self.tokens.append((self._uuid, self._name or ""))


def parse_token_list(page: str) -> list[tuple[str, str]] | None:
    """``[(uuid, name), ...]`` of the live tokens on a user's security page; None when the page has no token list."""
    parser = _TokenList()
    parser.feed(page)
    parser.close()
    return parser.tokens if parser.found_list else None
