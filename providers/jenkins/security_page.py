"""The one place Jenkins lists a user's API tokens: the user's security page (``/user/{id}/security/``, or
``/user/{id}/configure`` on older releases), rendered by ``ApiTokenProperty/config.jelly``.

Each live token is a ``div.token-list-existing-item`` holding a hidden ``<input name="tokenUuid">`` and a
``<input name="tokenName">`` text box; the template's empty "new token" row (``token-list-new-item``) is skipped.
The page shows names and uuids only, never a token value.
"""

from __future__ import annotations

from html.parser import HTMLParser

from app.net import MAX_BODY_BYTES, MAX_ITEMS, LimitExceededError

MAX_PAGE_CHARS = MAX_BODY_BYTES  # the HTTP client already stops at 8 MiB; a page handed in directly is held to it too
MAX_TOKENS = MAX_ITEMS
FEED_CHARS = 64 * 1024  # parsed in slices so a page with too many tokens stops early


class SecurityPage(str):
    """A security page's HTML that knows where it came from ("the security page of Jenkins user bot (https://...)")."""

    source: str

    def __new__(cls, html: str, *, source: str) -> SecurityPage:
        page = super().__new__(cls, html)
        page.source = source
        return page


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


def parse_token_list(page: str, *, source: str | None = None) -> list[tuple[str, str]] | None:
    """``[(uuid, name), ...]`` of the live tokens on a user's security page; None when the page has no token list.

    A page over MAX_PAGE_CHARS, or listing more than MAX_TOKENS tokens, is refused (LimitExceededError naming
    ``source``, else the SecurityPage's own)."""
    where = source or getattr(page, "source", None) or "a Jenkins security page"
    if len(page) > MAX_PAGE_CHARS:
        raise LimitExceededError(
            f"{where} is larger than {MAX_PAGE_CHARS // 2**20} MiB; keyturn stopped reading it",
            hint="check that accounts.*.base_url points at the Jenkins controller itself",
        )
    parser = _TokenList()

    def bounded() -> None:
        if len(parser.tokens) > MAX_TOKENS:
            raise LimitExceededError(
                f"{where} lists more than {MAX_TOKENS:,} API tokens; keyturn stopped reading it",
                hint="revoke the tokens nobody uses on that page, or check that accounts.*.base_url points at the "
                "Jenkins controller itself",
            )

    for start in range(0, len(page), FEED_CHARS):
        parser.feed(page[start : start + FEED_CHARS])
        bounded()
    parser.close()
    bounded()
    return parser.tokens if parser.found_list else None
