"""The Jenkins security page as both eras render it, and the consumer gate that reads its use counts.

The fixture pages below are written by hand from the real templates (github.com/jenkinsci/jenkins, read with
``git show <tag>:<path>``; see providers/jenkins/SOURCE.md), not from keyturn's emulator:

- ROWS_2_479_3: core/src/main/resources/jenkins/security/ApiTokenProperty/config.jelly at jenkins-2.479.3, with
  lib/form/entry.jelly, repeatable.jelly, textbox.jelly, readOnlyTextbox.jelly and advanced.jelly of that tag, and the
  texts of ApiTokenProperty/config.properties (TokenLastUse, TokenNeverUsed, TokenCreation, ...).
- CARDS_2_548: the same config.jelly at jenkins-2.548 (identical at master 2.578+), jenkins/security/Messages.properties
  (lastUsed*, createdDaysAgo) and config.properties (tokenExpiresOn, tokenCreatedOn, TokenNeverUsed.Title).
- CARDS_2_505: config.jelly at jenkins-2.505 (PR #10484, merge 78160c62417240c90d130d8fe8790bff2809fbf1), where
  cards still carry ``jenkins-card`` (dropped in 2.539 by 2fa902c78c0c396bbe0270579ee577da60f9e4d8) and the
  creation line is ``createdDaysAgo()``.

Icons (l:icon inlines the symbol's SVG) are shortened to an empty <svg>; the whitespace Jelly keeps from the template
is kept, the dates are en_US medium (Java 21 puts U+202F before AM/PM, Java 17 a space).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.config import Account, Target
from app.sandbox.jenkins import NEW_VERSION, OLD_VERSION, SEED_TOKEN_UUID, JenkinsStandalone, seed_jenkins
from app.sandbox.state import SandboxState
from app.secret import SecretValue
from providers.base import GateCheck, Interaction, MintedToken, MintRequest, RotationContext
from providers.jenkins import client as jenkins_client
from providers.jenkins import provider as jenkins_provider
from providers.jenkins.provider import GATE_ID, JenkinsProvider
from providers.jenkins.security_page import days_bound, parse_security_page, parse_token_list

LEGACY_VALUE = "1100deadbeef00000000000000000000ff"  # a legacy token's value, shown in its read-only text box

ROWS_2_479_3 = """<!DOCTYPE html><html><head><title>Security [Jenkins]</title></head><body>
<form method="post" name="config" action="configSubmit">
<div class="jenkins-form-item tr "><div class="jenkins-form-label help-sibling">Current token(s)<a href="#" class="jenkins-help-button" tooltip="Help for feature: Current token(s)" helpURL="/descriptor/jenkins.security.ApiTokenProperty/help/tokenStore"><span>?</span></a></div><div class="setting-main">
        <div class="token-list ignore-dirty-panel">
            <div class="token-list-item token-list-empty-item hidden-message">
                <div class="list-empty-message">There are no registered tokens for this user.</div>
            </div>
            <div class="repeated-container"><div class="repeated-chunk to-be-removed" name="tokenStore"><div class="repeated-chunk__header"></div>
                        <div class="token-list-item token-list-new-item">
                            <input type="hidden" class="token-uuid-input" name="tokenUuid">
                            <input class="jenkins-input   token-name" name="tokenName" value="" type="text" placeholder="Default name">&nbsp;<span class="new-token-value"></span>
                            <span class="token-save">
                                <button class="jenkins-button" type="button" tabindex="0" id="api-token-property-token-save" data-target-url="/user/keyturn-bot/descriptorByName/jenkins.security.ApiTokenProperty/generateNewToken">
                                    Generate
                                </button>
                            </span>
                            <div class="warning display-after-generation">Copy this token now, because it cannot be recovered in the future.</div>
                        </div>
</div><div class="repeated-chunk" name="tokenStore"><div class="repeated-chunk__header"></div>
                        <div class="token-list-item token-list-existing-item force-dirty-panel ">
                            <input type="hidden" class="token-uuid-input" name="tokenUuid" value="5f0e7c3a-1b2d-4e6f-8a9b-0c1d2e3f4a5b">
                            <input class="jenkins-input   token-name" name="tokenName" value="ci-deploy" type="text">
                            <span class="token-creation age-mmmh" title="Jun 30, 2025, 8:00:00 AM">Created 208 day(s) ago</span>
                            <span class="to-right">
                                                    <span class="token-use-counter" title="Jan 24, 2026, 9:15:02 AM">
                                                        Used <b>1,234</b> time(s), last time was <b>2</b> day(s) ago
                                                    </span>
                                <a href="#" class="jenkins-button jenkins-button--tertiary jenkins-!-destructive-color api-token-property-token-revoke" data-message-if-legacy-revoked="The legacy token has been revoked" data-confirm="Are you sure you want to revoke this token? Applications that are using it will be not able to connect anymore." data-confirm-title="Revoke Token" data-target-url="/user/keyturn-bot/descriptorByName/jenkins.security.ApiTokenProperty/revoke"><svg class="svg-icon" aria-hidden="true"></svg></a>
                            </span>
                        </div>
</div><div class="repeated-chunk" name="tokenStore"><div class="repeated-chunk__header"></div>
                        <div class="token-list-item token-list-existing-item force-dirty-panel ">
                            <input type="hidden" class="token-uuid-input" name="tokenUuid" value="0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a">
                            <input class="jenkins-input   token-name" name="tokenName" value="ci-deploy-20260101-abcdef12" type="text">
                            <span class="token-creation age-ok" title="Jan 26, 2026, 4:28:34 AM">Created 0 day(s) ago</span>
                            <span class="to-right">
                                                <span class="token-use-counter">
                                                    <strong title="We strongly recommend that you revoke tokens which you do not plan to use">
                                                        <svg class="svg-icon icon-warning icon-sm" aria-hidden="true"></svg>
                                                        Never used
                                                    </strong>
                                                </span>
                                <a href="#" class="jenkins-button jenkins-button--tertiary jenkins-!-destructive-color api-token-property-token-revoke" data-target-url="/user/keyturn-bot/descriptorByName/jenkins.security.ApiTokenProperty/revoke"><svg class="svg-icon" aria-hidden="true"></svg></a>
                            </span>
                        </div>
</div><div class="repeated-chunk" name="tokenStore"><div class="repeated-chunk__header"></div>
                        <div class="token-list-item token-list-existing-item force-dirty-panel legacy-token">
                            <input type="hidden" class="token-uuid-input" name="tokenUuid" value="9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d">
                            <input class="jenkins-input   token-name" name="tokenName" value="Legacy Token" type="text">
                                <svg class="svg-icon icon-warning icon-sm" aria-hidden="true"></svg>
                            <span class="token-creation age-ok" title="There is no creation date for that token">Unknown</span>
                            <span class="to-right">
                                                    <span class="token-use-counter" title="There is no last use date for that token">
                                                        Never used
                                                    </span>
                                <a href="#" class="jenkins-button jenkins-button--tertiary jenkins-!-destructive-color api-token-property-token-revoke" data-target-url="/user/keyturn-bot/descriptorByName/jenkins.security.ApiTokenProperty/revoke"><svg class="svg-icon" aria-hidden="true"></svg></a>
                            </span>
                        </div>
</div><div class="repeatable-insertion-point"></div><button type="button" class="jenkins-button repeatable-add">
        Add new Token
      </button></div>
        </div>
</div><div class="validation-error-area">
</div><div class="help-area tr"><div class="help"><div class="jenkins-spinner">Loading...</div></div></div></div>
<div class='jenkins-form-item tr'><div class="advancedLink jenkins-buttons-row"><button type="button" class="jenkins-button advanced-button advancedButton">
        Show Legacy API Token
      </button></div><div class="advancedBody"><div class="tbody dropdownList-container">
<div class="jenkins-form-item tr "><div class="jenkins-form-label help-sibling">Legacy API Token</div><div class="setting-main"><input class="jenkins-input  " name="_.apiToken" value="LEGACY" id="apiToken" type="text" readonly="readonly"></div></div>
</div></div></div>
</form></body></html>""".replace("LEGACY", LEGACY_VALUE)

NNBSP = "\u202f"
CARDS_2_548 = f"""<!DOCTYPE html><html><head><title>Security [Jenkins]</title></head><body>
<form method="post" name="config" action="configSubmit">
    <div id="api-token-add-template" class="jenkins-hidden">
        <div>
            <div class="jenkins-form-item tr "><div class="jenkins-form-label help-sibling">Name</div><div class="setting-main"><input class="jenkins-input  " name="tokenName" value="" type="text"></div></div>
            <div class="jenkins-form-label">Expiration</div>
        </div>
    </div>
    <div class="jenkins-hidden" id="api-token-row-template">
        <div class="token-card">
            <div class="token-card-inner">
                <div class="token-card__title">
                    <span class="token-name"></span>
                </div>
                <div class="token-stats">
                    <span class="api-token-new-expiration token-creation" data-never="This token does not expire" data-expires-on="Expires on __DATA__"></span>
                    <span class="token-last-used">Never used</span>
                </div>
            </div>
        </div>
    </div>
    <div class="jenkins-hidden" id="api-token-template">
        <div>
            <div class="jenkins-alert jenkins-alert-info">
                Copy this token now, because it cannot be recovered in the future.
            </div>
            <div class="api-token-new-form-row jenkins-quote jenkins-quote--monospace">
                <span class="api-token-new-value"></span>
            </div>
        </div>
    </div>
<div class="jenkins-form-item tr "><div class="jenkins-form-label help-sibling">Current token(s)</div><div class="setting-main">
        <div class="token-list ignore-dirty-panel">
            <div class="token-list-empty-item jenkins-hidden jenkins-!-margin-bottom-2" >
                <div class="jenkins-notice"><svg class="svg-icon" aria-hidden="true"></svg><div>No API tokens configured</div><div class="jenkins-notice__description"></div></div>
            </div>
            <div id="api-tokens" class="">
                <div id="api-token-list">
                        <div class="token-card " id="5f0e7c3a-1b2d-4e6f-8a9b-0c1d2e3f4a5b">
                            <div class="token-card-inner">
                                <div class="token-card__title " tooltip="">
                                        <span class="token-name">ci-deploy</span>
                                </div>
                                <div class="token-stats">
                                            <span class=" token-creation" tooltip="Created on Jun 30, 2025, 8:00:00{NNBSP}AM">
                                                Expires on 2/25/26
                                            </span>
                                    <span class="token-last-used">
                                                            <span class="jenkins-!-text-color-secondary" tooltip="Jan 25, 2026, 11:02:40{NNBSP}PM">
                                                                Last used yesterday
                                                            </span>
                                                            <span class="token-use-counter">12</span>
                                    </span>
                                </div>
                            </div>
                            <div class="token-controls">
            <button type="button" class="jenkins-button jenkins-button--tertiary api-token-property-token-rename" data-target-url="/user/keyturn-bot/descriptorByName/jenkins.security.ApiTokenProperty/rename" data-rename-title="Rename token" data-button-text="Rename" data-rename-message="New name" tooltip="Rename"><svg class="svg-icon icon-sm" aria-hidden="true"></svg></button>
            <button type="button" class="jenkins-button jenkins-button--tertiary jenkins-!-destructive-color api-token-property-token-revoke" data-message-if-legacy-revoked="The legacy token has been revoked" data-confirm="Are you sure you want to revoke this token? Applications that are using it will be not able to connect anymore." data-confirm-title="Revoke token" data-button-text="Revoke" data-token-uuid="5f0e7c3a-1b2d-4e6f-8a9b-0c1d2e3f4a5b" data-target-url="/user/keyturn-bot/descriptorByName/jenkins.security.ApiTokenProperty/revoke" tooltip="Revoke"><svg class="svg-icon icon-sm" aria-hidden="true"></svg></button>
                            </div>
                        </div>
                        <div class="token-card " id="0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a">
                            <div class="token-card-inner">
                                <div class="token-card__title " tooltip="">
                                        <span class="token-name">ci-deploy-20260126-0a1b2c3d</span>
                                </div>
                                <div class="token-stats">
                                            <span class="warning token-creation" tooltip="Created on Jan 26, 2026, 4:28:34{NNBSP}AM">
                                                This token does not expire
                                            </span>
                                    <span class="token-last-used">
                                                        <div class="token-never-used jenkins-!-text-color-secondary" tooltip="">
                                                            Never used
                                                        </div>
                                    </span>
                                </div>
                            </div>
                            <div class="token-controls"></div>
                        </div>
                        <div class="token-card " id="7e6d5c4b-3a29-4817-b6a5-948372615041">
                            <div class="token-card-inner">
                                <div class="token-card__title " tooltip="">
                                        <span class="token-name">old &lt;laptop&gt; &amp; script</span>
                                </div>
                                <div class="token-stats">
                                            <span class="error token-creation" tooltip="Created on Dec 1, 2025, 1:00:00{NNBSP}PM">
                                                This token has expired
                                            </span>
                                    <span class="token-last-used">
                                                            <span class="jenkins-!-text-color-secondary" tooltip="Jan 3, 2026, 6:00:00{NNBSP}PM">
                                                                Last used over 3 weeks ago
                                                            </span>
                                                            <span class="token-use-counter">7</span>
                                    </span>
                                </div>
                            </div>
                            <div class="token-controls"></div>
                        </div>
                </div>
                <button class="api-token-property-add jenkins-button jenkins-button--secondary" type="button" data-target-url="/user/keyturn-bot/descriptorByName/jenkins.security.ApiTokenProperty/generateNewToken">Add new token</button>
            </div>
        </div>
</div></div>
</form></body></html>"""

CARDS_2_505 = """<div class="token-list ignore-dirty-panel">
  <div class="token-list-empty-item jenkins-hidden jenkins-!-margin-bottom-2"></div>
  <div id="api-tokens" class=""><div id="api-token-list">
    <div class="token-card jenkins-card legacy-token" id="9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d">
      <div class="token-card-inner">
        <div class="token-card__title legacy-token" tooltip="We strongly recommend that you revoke this legacy token and replace it with a newly generated token for increased security.">
            <svg class="svg-icon" aria-hidden="true"></svg>
            <span class="token-name">Legacy Token</span>
        </div>
        <div class="token-stats">
          <span class="token-creation jenkins-!-text-color-secondary" tooltip="There is no creation date for that token">Created today</span>
          <span class="token-last-used">
              <span tooltip="There is no last use date for that token">
                  Never used
              </span>
          </span>
        </div>
      </div>
    </div>
    <div class="token-card jenkins-card " id="5f0e7c3a-1b2d-4e6f-8a9b-0c1d2e3f4a5b">
      <div class="token-card-inner">
        <div class="token-card__title " tooltip=""><span class="token-name">ci-deploy</span></div>
        <div class="token-stats">
          <span class="token-creation jenkins-!-text-color-secondary" tooltip="Jan 23, 2026, 8:00:00 AM">Created 3 days ago</span>
          <span class="token-last-used">
              <span class="jenkins-!-text-color-secondary" tooltip="Jan 26, 2026, 4:00:00 AM">
                  Last used today
              </span>
              <span class="token-use-counter">1</span>
          </span>
        </div>
      </div>
    </div>
    <div class="token-card jenkins-card " id="3c2b1a09-f8e7-4d6c-a5b4-c3d2e1f0a9b8">
      <div class="token-card-inner">
        <div class="token-card__title " tooltip=""><span class="token-name">forgotten</span></div>
        <div class="token-stats">
          <span class="token-creation jenkins-!-warning-color" tooltip="Jun 1, 2025, 8:00:00 AM">Created 7 months ago</span>
          <span class="token-last-used">
              <div class="token-never-used jenkins-!-warning-color" tooltip="We recommend that you revoke tokens which you do not plan to use.">
                  <svg class="svg-icon icon-sm" aria-hidden="true"></svg>
                  Never used
              </div>
          </span>
        </div>
      </div>
    </div>
  </div></div>
</div>"""


def test_rows_of_2_479_3() -> None:
    page = parse_security_page(ROWS_2_479_3)
    assert page is not None and page.markup == "rows"
    deploy, minted, legacy = page.tokens
    assert (deploy.uuid, deploy.name, deploy.uses) == ("5f0e7c3a-1b2d-4e6f-8a9b-0c1d2e3f4a5b", "ci-deploy", 1234)
    assert deploy.last_used_days == (2, 2) and deploy.last_used_at == "Jan 24, 2026, 9:15:02 AM"
    assert deploy.created == "Created 208 day(s) ago"
    assert (minted.name, minted.uses, minted.last_used_days) == ("ci-deploy-20260101-abcdef12", 0, None)
    assert legacy.legacy and legacy.name == "Legacy Token"
    assert legacy.uses is None  # used (useCounter > 0) but without a date: the page shows no count
    assert not page.stats_disabled
    # the repeatable's master copy (the empty new-token row) is no token; the legacy value is never read
    assert parse_token_list(ROWS_2_479_3) == [(t.uuid, t.name) for t in page.tokens]
    assert LEGACY_VALUE not in repr(page)


def test_cards_of_2_548() -> None:
    page = parse_security_page(CARDS_2_548)
    assert page is not None and page.markup == "cards"
    assert [t.name for t in page.tokens] == ["ci-deploy", "ci-deploy-20260126-0a1b2c3d", "old <laptop> & script"]
    deploy, minted, laptop = page.tokens
    assert deploy.uses == 12 and deploy.last_used == "Last used yesterday" and deploy.last_used_days == (1, 1)
    assert deploy.last_used_at == "Jan 25, 2026, 11:02:40 PM"  # U+202F read as a space
    assert deploy.expiry == "Expires on 2/25/26" and deploy.created == "Created on Jun 30, 2025, 8:00:00 AM"
    assert minted.uses == 0 and minted.expiry == "This token does not expire"
    assert laptop.uses == 7 and laptop.expiry == "This token has expired" and laptop.last_used_days == (21, 27)
    # the hidden row template the page's script clones is a card without a uuid: skipped
    assert all(t.uuid for t in page.tokens) and len(page.tokens) == 3


def test_cards_of_2_505() -> None:
    page = parse_security_page(CARDS_2_505)
    assert page is not None and page.markup == "cards"
    legacy, deploy, forgotten = page.tokens
    assert legacy.legacy and legacy.uses is None and legacy.last_used == "Never used"
    assert (deploy.uses, deploy.last_used_days, deploy.created) == (1, (0, 0), "Created 3 days ago")
    assert forgotten.uses == 0


def test_statistics_disabled_in_both_markups() -> None:
    rows = ROWS_2_479_3.replace(
        '<span class="token-use-counter" title="Jan 24, 2026, 9:15:02 AM">',
        '<span class="no-statistics" title="Token usage statistics are currently disabled">',
    )
    cards = CARDS_2_548.replace(
        '<span class="token-use-counter">12</span>', ""
    ).replace(
        f'<span class="jenkins-!-text-color-secondary" tooltip="Jan 25, 2026, 11:02:40{NNBSP}PM">',
        '<span class="no-statistics" tooltip="Token usage statistics are currently disabled">',
    )
    for html in (rows, cards):
        page = parse_security_page(html)
        assert page is not None and page.stats_disabled
        assert page.tokens[0].uses is None and not page.tokens[0].stats


def test_a_translated_page_still_gives_the_counts() -> None:
    """config_fr.properties: TokenLastUse=Utilisé <b>{0}</b> fois, le dernier usage date de <b>{1}</b> jours."""
    fr = ROWS_2_479_3.replace(
        "Used <b>1,234</b> time(s), last time was <b>2</b> day(s) ago",
        "Utilisé <b>1\u202f234</b> fois, le dernier usage date de <b>2</b> jours",
    )
    page = parse_security_page(fr)
    assert page is not None and page.tokens[0].uses == 1234 and page.tokens[0].last_used_days == (2, 2)


def test_empty_lists_and_foreign_pages() -> None:
    assert parse_security_page('<div class="token-list ignore-dirty-panel"><div id="api-token-list"></div></div>') == \
        parse_security_page('<div class="token-list ignore-dirty-panel"></div>')
    empty = parse_security_page('<div class="token-list"></div>')
    assert empty is not None and empty.tokens == ()
    assert parse_security_page("<html><body>Login</body></html>") is None


@pytest.mark.parametrize(
    ("text", "bound"),
    [
        ("Last used today", (0, 0)), ("Last used yesterday", (1, 1)), ("Last used 5 days ago", (5, 5)),
        ("Last used over a week ago", (7, 14)), ("Last used over 2 weeks ago", (14, 20)),
        ("Last used over a month ago", (28, 61)), ("Last used over 3 months ago", (84, 123)),
        ("Last used over a year ago", (365, 731)), ("Last used over 4 years ago", (1460, None)),
        ("Zuletzt heute verwendet", None),
    ],
)
def test_relative_last_use_is_bounded_to_days(text: str, bound: tuple[int, int | None] | None) -> None:
    assert days_bound(text) == bound


# -- the gate, against the emulator ------------------------------------------------------------------------------

CANARY = "11c0ffee" + "ab" * 14


@pytest.fixture
def jk(tmp_path: Path) -> Iterator[JenkinsStandalone]:
    state = SandboxState()
    with JenkinsStandalone(tmp_path / "jk", state=state, world=seed_jenkins(state, token_value=CANARY)) as server:
        yield server
    assert server.state.internal_errors == [], "the emulator itself failed"


def make(jk: JenkinsStandalone, *, account: dict[str, Any] | None = None, secrets: dict[str, str] | None = None,
         target: dict[str, Any] | None = None, now: Any = None) -> JenkinsProvider:
    s = jk.world.seeded
    assert s is not None
    values = {"env:JK": CANARY, "env:PW": s.password, **(secrets or {})}
    acc = Account(**{"platform": "jenkins", "organization": "jenkins", "base_url": jk.url, "user": s.user,
                     "api_token": "env:JK", **(account or {})})
    tgt = Target(**{"account": "jenkins", "token_name": s.token_name, "token_uuid": s.token_uuid, "scopes": ["user"],
                    **(target or {})})
    kw = {"now": now} if now is not None else {}
    return JenkinsProvider("jenkins", acc, "jenkins", tgt, ca_bundle=jk.ca_path,
                           resolve_secret=lambda ref: SecretValue(values[ref]), interaction=Interaction(), **kw)


def rotate_to_baseline(p: JenkinsProvider) -> tuple[MintedToken, RotationContext]:
    """What the engine does up to `verified`: mint, (store), verify, then the baseline, journaled into the ctx."""
    p.sign_in()
    minted = p.mint(MintRequest(display_name="ci-deploy-20260101-abcdef12", scopes=("user",), expires_at=None))
    p.verify(minted)
    ctx = RotationContext(rotation_id="r1", minted=minted.info, minted_fingerprint=minted.value.fingerprint,
                          value=minted.value, stored_at=datetime.now(UTC))
    return minted, dataclasses.replace(ctx, gate_baseline=p.gate_baseline(ctx))


def check(p: JenkinsProvider, ctx: RotationContext) -> GateCheck:
    (g,) = p.consumer_gates(ctx)
    assert g.gate == GATE_ID
    return g


def other_process(ctx: RotationContext) -> RotationContext:
    """A later `keyturn resume`: it took no baseline (its mark is not in this process), has sent nothing yet and
    holds no value."""
    assert ctx.minted is not None
    with jenkins_client._OWN_LOCK:
        jenkins_client._OWN_USES.clear()
    for key in [k for k in jenkins_provider._MARKS if k[2] == ctx.minted.id]:
        jenkins_provider._MARKS.pop(key)
    return dataclasses.replace(ctx, value=None)


@pytest.mark.parametrize("version", [NEW_VERSION, OLD_VERSION])
def test_gate_waits_for_a_job_then_passes_in_the_run_that_took_the_baseline(jk: JenkinsStandalone, version: str,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    jk.world.version = version
    p = make(jk)
    try:
        minted, ctx = rotate_to_baseline(p)
        base = ctx.gate_baseline
        assert base["reader"] == "new token" and base["markup"] == ("cards" if version == NEW_VERSION else "rows")
        assert base["old"] == [SEED_TOKEN_UUID] and base["uses"][minted.info.id] == 2  # verify + the baseline read
        old_before = jk.world.uses(SEED_TOKEN_UUID)
        for _ in range(3):  # keyturn's own reads are nobody's use
            g = check(p, ctx)
            assert not g.passed and g.waiting_for == "the new token not used yet by any job"
        assert jk.world.uses(SEED_TOKEN_UUID) == old_before  # the gate never reads with the old token
        assert jk.world.consumer_call(minted.value.reveal())
        g = check(p, ctx)
        assert g.passed and "used by jobs once" in g.progress and g.waiting_for == ""
        assert jk.world.consumer_call(CANARY) and jk.world.consumer_call(CANARY)
        g = check(p, ctx)
        assert not g.passed and g.waiting_for == "the old token used 2 times since the new one was stored"
        assert "get 401" in g.breaks
        said = " ".join([g.waiting_for, g.progress, g.title, g.breaks, str(g.url), repr(base), caplog.text])
        assert CANARY not in said and minted.value.reveal() not in said
    finally:
        p.close()


def test_a_later_run_cannot_count_its_predecessors_reads_as_a_job(jk: JenkinsStandalone) -> None:
    p = make(jk)
    try:
        minted, ctx = rotate_to_baseline(p)
        check(p, ctx)
    finally:
        p.close()
    later = make(jk, secrets={"env:JK": minted.value.reveal()})  # the store wrote the new value where api_token points
    try:
        resumed = other_process(ctx)
        g = check(later, resumed)
        assert not g.passed and "cannot tell a job's use of the new token" in g.waiting_for
        assert "accounts.jenkins.password" in g.waiting_for
        assert jk.world.consumer_call(minted.value.reveal())
        assert not check(later, resumed).passed  # still not provable here...
        soaked = dataclasses.replace(resumed, soak_s=60, stored_at=datetime.now(UTC) - timedelta(seconds=61))
        g = check(later, soaked)  # ...but the soak time stands in for the proof
        assert g.passed and g.progress.startswith("the soak time (revoke_after) since the store is over")
        assert not check(later, dataclasses.replace(resumed, soak_s=3600)).passed
    finally:
        later.close()


def test_a_password_session_reads_exactly_in_every_run(jk: JenkinsStandalone) -> None:
    p = make(jk, account={"password": "env:PW"})
    try:
        minted, ctx = rotate_to_baseline(p)
        assert ctx.gate_baseline["reader"] == "password session"
        assert ctx.gate_baseline["uses"][minted.info.id] == 1  # the verify call only: the session's read is no use
    finally:
        p.close()
    later = make(jk, account={"password": "env:PW"}, secrets={"env:JK": minted.value.reveal()})
    try:
        resumed = other_process(ctx)
        for _ in range(2):
            g = check(later, resumed)
            assert not g.passed and g.waiting_for == "the new token not used yet by any job"
        assert jk.world.uses(minted.info.id) == 1
        assert jk.world.consumer_call(minted.value.reveal())
        assert check(later, resumed).passed
    finally:
        later.close()
    assert jk.world.counters["auth_session"] >= 4


def test_only_the_old_token_to_read_with_says_so(jk: JenkinsStandalone) -> None:
    """A run that holds no new value while api_token still gives the old one: reading would make the old look used."""
    p = make(jk)
    try:
        _minted, ctx = rotate_to_baseline(p)
    finally:
        p.close()
    later = make(jk)  # the reference still holds the old value
    try:
        before = jk.world.uses(SEED_TOKEN_UUID)
        g = check(later, other_process(ctx))
        assert not g.passed and "holds only the old token" in g.waiting_for
        assert jk.world.uses(SEED_TOKEN_UUID) == before
    finally:
        later.close()


def test_no_counts_no_pass(jk: JenkinsStandalone) -> None:
    jk.world.usage_statistics = False
    p = make(jk)
    try:
        minted, ctx = rotate_to_baseline(p)
        assert ctx.gate_baseline["statistics"] is False
        assert jk.world.consumer_call(minted.value.reveal())
        g = check(p, ctx)
        assert not g.passed and "usage statistics are off" in g.waiting_for
    finally:
        p.close()


def test_an_unreadable_page_never_undoes_the_rotation_and_never_passes(jk: JenkinsStandalone) -> None:
    jk.world.security_page = False
    p = make(jk)
    try:
        minted, ctx = rotate_to_baseline(p)  # gate_baseline does not raise
        assert "uses" not in ctx.gate_baseline and "could not be read" in ctx.gate_baseline["unreadable"]
        jk.world.security_page = True
        assert jk.world.consumer_call(minted.value.reveal())
        g = check(p, ctx)
        assert not g.passed and "nothing to compare with" in g.waiting_for
        jk.world.security_page = False
        g = check(p, dataclasses.replace(ctx, gate_baseline={"uses": {}, "old": [], "reader": "new token"}))
        assert not g.passed and "could not be read" in g.waiting_for
    finally:
        p.close()


def test_gate_plan_and_no_rotation() -> None:
    acc = Account(platform="jenkins", organization="j", base_url="https://jenkins.example.test", user="bot", api_token="env:X")
    tgt = Target(account="j", token_name="ci", scopes=["user"])
    p = JenkinsProvider("j", acc, "ci", tgt, ca_bundle=None, resolve_secret=lambda ref: SecretValue("x"), interaction=Interaction())
    assert "new API token used by a job and the old one not used since the store" in p.gate_plan()
    assert "accounts.j.password" in p.gate_plan()
    assert p.consumer_gates(RotationContext()) == [] and p.gate_baseline(RotationContext()) == {}
    with_pw = JenkinsProvider("j", acc.model_copy(update={"password": "env:P"}), "ci", tgt, ca_bundle=None,
                              resolve_secret=lambda ref: SecretValue("x"), interaction=Interaction())
    assert "password" not in with_pw.gate_plan()
