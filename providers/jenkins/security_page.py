"""The one place Jenkins lists a user's API tokens: the user's security page (``/user/{id}/security/``, or
``/user/{id}/configure`` on older releases), rendered by ``core/src/main/resources/jenkins/security/ApiTokenProperty/
config.jelly``. Two markups, both read here (sources in ``providers/jenkins/SOURCE.md``):

- **rows**, up to 2.504 (e.g. 2.479.3): an ``f:repeatable`` of ``div.token-list-existing-item``, each with a hidden
  ``<input name="tokenUuid">`` and a ``<input name="tokenName">`` text box; the repeatable's master copy (the empty
  "new token" row, ``token-list-new-item``) is skipped. Use statistics in ``span.token-use-counter``: the message
  ``TokenLastUse`` = ``Used <b>{0}</b> time(s), last time was <b>{1}</b> day(s) ago`` (every translation keeps the
  count in the first ``<b>`` and the days in the second), its ``title`` the last use as a medium date and time;
  never used: a ``<strong>`` inside it; ``span.no-statistics`` when usage statistics are disabled.
- **cards**, from 2.505 (PR #10484, merge 78160c62417240c90d130d8fe8790bff2809fbf1, "Refresh user api token ui with
  cards and dialogs"): ``div#api-token-list`` holds one ``div.token-card`` per token whose ``id`` is the uuid (class
  ``token-card jenkins-card`` until 2.538, ``token-card`` since 2.539, commit 2fa902c78c, #11321); the name is
  ``span.token-name``'s text, exactly (the template puts nothing around ``${token.name}``; Jenkins keeps names as
  given). ``span.token-last-used`` holds a span whose ``tooltip`` is the last use as a medium date
  and time and whose text is ``TokenInfoAndStats.lastUsedDaysAgo()`` ("Last used today", "... yesterday",
  "... N days ago", "... over a week ago", "... over N weeks ago", months, years), then ``span.token-use-counter``
  with the bare count; never used: ``div.token-never-used``; ``span.no-statistics`` when disabled. The hidden
  templates the page's script clones (``#api-token-row-template``, ``#api-token-template``) hold a card without a
  uuid and are skipped.

What the page says of use is ``ApiTokenStats``: Jenkins adds one to a token's ``useCounter`` and sets
``lastUseDate`` on every request whose ``Authorization: Basic`` header matched that token (``matchesPassword`` ->
``updateUsageForId``), before the request is served, so a page read with a token shows that read. Counts are exact.
The last use is shown only to the calendar day in the controller's time zone (the relative text; rows: "N day(s)
ago") or as a date and time in the controller's locale and time zone (the tooltip, zone not said): keyturn keeps both
as shown and decides nothing on them, only on the counts.

The page names tokens, never their values, except a *legacy* API token, whose value an older Jenkins shows in
``<input id="apiToken">`` (``f:readOnlyTextbox``) when ``mustDisplayLegacyApiToken``: that input is never read here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

from app.errors import ProviderError
from app.net import MAX_BODY_BYTES, MAX_ITEMS, LimitExceededError

MAX_PAGE_CHARS = MAX_BODY_BYTES  # the HTTP client already stops at 8 MiB; a page handed in directly is held to it too
MAX_TOKENS = MAX_ITEMS
FEED_CHARS = 64 * 1024  # parsed in slices so a page with too many tokens stops early

# the hidden templates of the 2.505+ page (config.jelly): cards in them are no tokens
TEMPLATES = frozenset({"api-token-row-template", "api-token-template", "api-token-add-template"})
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})

Markup = Literal["rows", "cards"]
_NONE: frozenset[str] = frozenset()


class UnreadablePageError(ProviderError):
    """The page has a token list keyturn cannot read (a markup it does not know): an error, never "no tokens"."""


class SecurityPage(str):
    """A security page's HTML that knows where it came from ("the security page of Jenkins user bot (https://...)")."""

    source: str

    def __new__(cls, html: str, *, source: str) -> SecurityPage:
        page = super().__new__(cls, html)
        page.source = source
        return page


@dataclass(frozen=True)
class PageToken:
    """One API token as the security page shows it (names, ids, dates and counts: never a value)."""

    uuid: str
    name: str
    created: str = ""  # the creation as shown: "Created 3 day(s) ago" (rows), the tooltip "Created on <date>" (2.548+)
    expiry: str = ""  # 2.548+: "Expires on 4/26/26", "This token does not expire", "This token has expired"
    stats: bool = True  # False: the page says usage statistics are disabled ("No statistics available")
    uses: int | None = None  # the use count; None when the page shows none (statistics off, a count without a date)
    last_used: str = ""  # the last use as shown: "Last used today" / "Used 3 time(s), last time was 0 day(s) ago"
    last_used_at: str = ""  # the tooltip / title: a medium date and time in the controller's zone, e.g. "Jan 26, 2026, 4:28:34 AM"
    last_used_days: tuple[int, int | None] | None = None  # calendar days since the last use, (at least, at most)
    legacy: bool = False


@dataclass(frozen=True)
class TokenPage:
    markup: Markup
    tokens: tuple[PageToken, ...]

    @property
    def stats_disabled(self) -> bool:
        return any(not t.stats for t in self.tokens)

    def token(self, uuid: str) -> PageToken | None:
        return next((t for t in self.tokens if t.uuid == uuid), None)


def _clean(text: str) -> str:
    return " ".join(text.split())


_DAYS = [  # TokenInfoAndStats.lastUsedDaysAgo() (jenkins/security/Messages.properties), English only
    (re.compile(r"last used today", re.I), lambda n: (0, 0)),
    (re.compile(r"last used yesterday", re.I), lambda n: (1, 1)),
    (re.compile(r"last used (\d+) days ago", re.I), lambda n: (n, n)),
    (re.compile(r"last used over a week ago", re.I), lambda n: (7, 14)),
    (re.compile(r"last used over (\d+) weeks ago", re.I), lambda n: (7 * n, 7 * n + 6)),
    (re.compile(r"last used over a month ago", re.I), lambda n: (28, 61)),
    (re.compile(r"last used over (\d+) months ago", re.I), lambda n: (28 * n, 31 * n + 30)),
    (re.compile(r"last used over a year ago", re.I), lambda n: (365, 731)),
    (re.compile(r"last used over (\d+) years ago", re.I), lambda n: (365 * n, None)),
]


def days_bound(text: str) -> tuple[int, int | None] | None:
    """The calendar days since the last use a 2.505+ relative text allows, (at least, at most); None when unknown.

    ``lastUsedDaysAgo`` is ``Period.between(lastUse, today)`` in the controller's zone: "today" means since its last
    midnight, "over 2 weeks" 14 to 20 days, a month 28 to 61; nothing finer than a day can be read from it."""
    for pattern, bound in _DAYS:
        m = pattern.search(text)
        if m:
            return bound(int(m.group(1)) if m.groups() else 0)
    return None


def _count(text: str) -> int | None:
    digits = re.sub(r"\D", "", text)  # MessageFormat groups thousands by locale ("1,234", "1 234")
    return int(digits) if digits else None


class _Item:
    def __init__(self, markup: Markup, uuid: str, legacy: bool) -> None:
        self.markup: Markup = markup
        self.uuid = uuid
        self.name = ""
        self.legacy = legacy
        self.created = ""
        self.created_tip = ""
        self.counter = ""  # cards: the counter's text; rows: the counter span's whole text
        self.bolds: list[str] = []  # rows: the <b> texts inside the counter
        self.last_text = ""
        self.last_tip = ""
        self.never = False
        self.no_stats = False
        self.has_counter = False

    def token(self) -> PageToken:
        uses: int | None = None
        last_used = ""
        days: tuple[int, int | None] | None = None
        if self.markup == "rows":
            created = _clean(self.created) or _clean(self.created_tip)
            expiry = ""
            if self.never:
                uses = 0
            elif len(self.bolds) >= 2:
                uses = _count(self.bolds[0])
                d = _count(self.bolds[1])
                days = (d, d) if d is not None else None
                last_used = _clean(self.counter)
            else:
                last_used = _clean(self.counter)  # a count above zero without a date: the page hides the count
        else:
            tip = _clean(self.created_tip)
            text = _clean(self.created)
            if tip.lower().startswith("created on") or "expire" in text.lower():  # 2.548+: the span says the expiry
                created, expiry = tip, text
            else:
                created, expiry = text, ""
            if self.never:
                uses = 0
            elif self.has_counter:
                uses = _count(self.counter)
                last_used = _clean(self.last_text)
                days = days_bound(last_used)
            else:
                last_used = _clean(self.last_text)
        return PageToken(
            uuid=self.uuid, name=self.name, created=created, expiry=expiry, stats=not self.no_stats,
            uses=None if self.no_stats else uses, last_used=last_used, last_used_at=_clean(self.last_tip),
            last_used_days=days, legacy=self.legacy,
        )


class _TokenList(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found_list = False  # the page has a token list at all (else: not a page we understand)
        self.markup: Markup | None = None
        self.tokens: list[PageToken] = []
        self._stack: list[tuple[str, frozenset[str]]] = []  # open elements and the roles they give their content
        self._item: _Item | None = None
        self.says_tokens: bool | None = None  # what the empty-list notice's class says: True = hidden (tokens listed)
        self.unreadable = 0  # token items without a uuid keyturn can read

    # -- roles ------------------------------------------------------------------------------------------------
    def _roles(self, tag: str, a: dict[str, str], parent: frozenset[str]) -> frozenset[str]:
        classes = set(a.get("class", "").split())
        roles = set(parent)
        if tag == "div" and a.get("id") in TEMPLATES:
            roles.add("template")
        if tag == "div" and "token-list" in classes:
            self.found_list = True
        if tag == "div" and "token-list-empty-item" in classes and "template" not in roles:
            # config.jelly hides the "no tokens yet" notice when the list is not empty: 'hidden-message' (rows),
            # 'jenkins-hidden' (cards)
            self.says_tokens = bool(classes & {"hidden-message", "jenkins-hidden"})
        if "item" not in roles and "template" not in roles and tag == "div":
            if "token-list-existing-item" in classes:
                roles.add("item")
                self._item = _Item("rows", "", "legacy-token" in classes)
                self.markup = self.markup or "rows"
            elif "token-card" in classes:
                roles.add("item")
                self._item = _Item("cards", a.get("id", ""), "legacy-token" in classes)
                self.markup = self.markup or "cards"
            return frozenset(roles)
        item = self._item
        if "item" not in roles or item is None:
            return frozenset(roles)
        tip = a.get("tooltip") or a.get("title") or ""
        if tag == "input":  # rows
            if a.get("name") == "tokenUuid":
                item.uuid = a.get("value", "")
            elif a.get("name") == "tokenName":
                item.name = a.get("value", "")
        elif "token-name" in classes and tag == "span":
            roles.add("name")
        elif "token-creation" in classes:
            roles.add("created")
            item.created_tip = tip
        elif "no-statistics" in classes:
            item.no_stats = True
        elif "token-never-used" in classes:
            item.never = True
        elif "token-last-used" in classes:
            roles.add("lastused")
        elif "token-use-counter" in classes:
            roles.add("counter")
            item.has_counter = True
            if item.markup == "rows":
                item.last_tip = tip
        elif "counter" in roles and tag == "b":
            roles.add("bold")
            item.bolds.append("")
        elif "counter" in roles and tag == "strong" and item.markup == "rows":
            item.never = True
        elif "lastused" in roles and tag == "span" and "lastspan" not in roles:
            roles.add("lastspan")
            item.last_tip = tip
        return frozenset(roles)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        parent = self._stack[-1][1] if self._stack else _NONE
        if tag != "div" and "item" not in parent:  # outside a token only divs matter: keep the common case cheap
            roles = parent
        else:
            roles = self._roles(tag, {k: v or "" for k, v in attrs}, parent)
        if tag not in VOID:
            self._stack.append((tag, roles))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                closed = self._stack[i:]
                del self._stack[i:]
                break
        else:
            return
        if "item" in closed[0][1] and not (self._stack and "item" in self._stack[-1][1]):
            item, self._item = self._item, None
            if item is not None and item.uuid:
                self.tokens.append(item.token())
            elif item is not None:
                self.unreadable += 1

    def handle_data(self, data: str) -> None:
        item = self._item
        if item is None or not self._stack:
            return
        roles = self._stack[-1][1]
        if "item" not in roles:
            return
        if "bold" in roles:
            item.bolds[-1] += data
        if "counter" in roles:
            item.counter += data
        elif "lastspan" in roles:
            item.last_text += data
        elif "name" in roles:
            item.name += data
        elif "created" in roles:
            item.created += data


def parse_security_page(page: str, *, source: str | None = None) -> TokenPage | None:
    """The tokens a user's security page shows (either markup); None when the page has no token list at all.

    A token list that cannot be read is UnreadablePageError: a token item without a uuid, or the page's own
    "no tokens yet" notice (hidden when tokens are listed) disagreeing with what was read.

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
    if not parser.found_list:
        return None
    if parser.unreadable or (parser.says_tokens and not parser.tokens) or (parser.says_tokens is False and parser.tokens):
        # a token list keyturn cannot read is never "no tokens": the old token would never be found nor revoked
        what = (f"{parser.unreadable} token(s) without a uuid keyturn can read" if parser.unreadable
                else "tokens, but none in a markup keyturn knows" if parser.says_tokens
                else "no tokens, yet lists some")
        raise UnreadablePageError(
            f"keyturn cannot read the API token list on {where}: the page says {what}",
            hint="this Jenkins release renders its tokens in a way keyturn does not know (it reads the rows of "
            "2.504 and earlier and the cards of 2.505 and later); report it, and rotate this token by hand meanwhile",
        )
    return TokenPage(parser.markup or "cards", tuple(parser.tokens))


def parse_token_list(page: str, *, source: str | None = None) -> list[tuple[str, str]] | None:
    """``[(uuid, name), ...]`` of the live tokens on a user's security page; None when the page has no token list."""
    parsed = parse_security_page(page, source=source)
    return None if parsed is None else [(t.uuid, t.name) for t in parsed.tokens]
