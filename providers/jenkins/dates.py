"""The token expiry day Jenkins (2.548+) answers ``generateNewToken`` with, and shows on the security page.

``ApiTokenProperty.DescriptorImpl.doGenerateNewToken`` answers ``expirationDate`` as
``expirationDate.format(DateTimeFormatter.ofLocalizedDate(FormatStyle.SHORT).withLocale(Functions.getCurrentLocale()))``
or ``"never"``; the card of ``config.jelly`` says ``Expires on {same}`` (``TokenInfoAndStats.expirationDate``). The
short style depends on the request's locale: ``4/27/26`` (en-US), ``27/04/2026`` (en-GB), ``27.04.26`` (de-DE),
``2026/04/27`` (ja-JP). keyturn asks for en-US (``Accept-Language``), but a controller can force its own locale, so
the day is read by what keyturn asked for: of the readings of the three numbers (month-day-year, day-month-year,
year-month-day; two-digit years in 2000-2099), the one within a day of the expected day (today + the days keyturn
sent) wins; a text with none (a month name, another calendar) is no reading at all, and the caller falls back to
the expected day and says so.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

NEVER = "never"
TOLERANCE = timedelta(days=1)  # keyturn's today (UTC) and the controller's (its JVM's zone) may differ by a day


def _year(text: str) -> int | None:
    n = int(text)
    if len(text) == 4:
        return n
    if len(text) == 2:
        return 2000 + n
    return None


def readings(text: str) -> list[date]:
    """Every calendar day a numeric short date can mean (month-day-year, day-month-year, year-month-day)."""
    parts = re.findall(r"\d+", text)
    if len(parts) != 3 or re.search(r"[^\d\s./\-,\u200f\u200e]", text):
        return []
    out: list[date] = []
    a, b, c = parts
    for y, m, d in ((c, a, b), (c, b, a), (a, b, c)):
        year = _year(y)
        if year is None:
            continue
        try:
            out.append(date(year, int(m), int(d)))
        except ValueError:
            continue
    return sorted(set(out))


def expiry_day(text: str, expected: date) -> date | None:
    """The day ``text`` (Jenkins' short localized date) names, read as the one nearest ``expected`` within a day;
    None when no reading is that close (the caller then records ``expected`` and says it could not check it)."""
    best = min(readings(text), key=lambda d: abs(d - expected), default=None)
    return best if best is not None and abs(best - expected) <= TOLERANCE else None
