"""The Jenkins emulator against Jenkins' own files, vendored in app/sandbox/contracts/jenkins (see its SOURCE.md).

The emulator's security page for each emulated release uses the token markup of that release's
``ApiTokenProperty/config.jelly`` (its class names and ids, no other release's), and the texts it answers with are
the vendored message bundles' (``Messages.properties``, ``config.properties``), not invented ones.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from app.sandbox import jenkins as emulator
from app.sandbox.jenkins import SEED_USER, security_page_html, seed_jenkins

CONTRACTS = Path(emulator.__file__).with_name("contracts") / "jenkins"
# emulated release -> the vendored config.jelly that release ships (SOURCE.md: which tags share one file)
JELLY_OF = {"2.479.3": "2.479.3", "2.504": "2.479.3", "2.505": "2.505", "2.538": "2.505", "2.539": "2.539",
            "2.547": "2.539", "2.548": "2.548", "2.579": "2.548"}
# the token list's own classes (the form library's, e.g. repeatable.jelly's repeated-chunk, are not in config.jelly)
TOKEN_CLASS = re.compile(r"^(?:api-)?token-|^no-statistics$")


def vendored(name: str) -> str:
    return (CONTRACTS / name).read_text(encoding="utf-8")


def classes(markup: str) -> set[str]:
    """Every class in ``class="..."`` attributes (and the jelly tags' ``clazz="..."``, which f:textbox renders into
    its input's class), jelly expressions dropped, restricted to the token list's own."""
    found: set[str] = set()
    for attr in re.findall(r'\bclazz="([^"]*)"|\bclass="([^"]*)"', markup):
        attr = attr[0] or attr[1]
        found.update(c for c in re.sub(r"\$\{[^}]*\}", " ", attr).split() if TOKEN_CLASS.match(c))
    return found


def properties(name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in vendored(name).splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def page(version: str, *, used: bool = True, statistics: bool = True) -> str:
    clock = [1_769_400_000.0]
    world = seed_jenkins(lambda: clock[0])
    assert world.seeded is not None
    if used:
        assert world.consumer_call(world.seeded.token_value)
    world.generate(SEED_USER, "never-used", None)
    clock[0] += 3 * 86400
    return security_page_html(world.tokens(SEED_USER), user=SEED_USER, now=clock[0], version=version, statistics=statistics)


def test_the_vendored_files_are_the_ones_source_md_names() -> None:
    source = vendored("SOURCE.md")
    for path in sorted(CONTRACTS.iterdir()):
        if path.name == "SOURCE.md":
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        assert f"`{path.name}`" in source and digest in source, f"{path.name} ({digest}) is not listed in SOURCE.md"


@pytest.mark.parametrize("version", sorted(JELLY_OF))
def test_the_page_uses_only_its_releases_token_markup(version: str) -> None:
    jelly = vendored(f"config.jelly@{JELLY_OF[version]}")
    shown = classes(page(version)) | classes(page(version, used=False, statistics=False))
    assert shown, "the emulator's page has no token markup"
    assert shown <= classes(jelly), f"{version}: classes not in its config.jelly: {sorted(shown - classes(jelly))}"


@pytest.mark.parametrize("version", sorted(JELLY_OF))
def test_the_releases_identifying_markup_is_on_the_page(version: str) -> None:
    jelly, html = vendored(f"config.jelly@{JELLY_OF[version]}"), page(version)
    if "token-card" in jelly:  # 2.505+: cards keyed by the uuid as the element id, the name as text
        assert 'id="api-token-list"' in jelly and 'id="api-token-list"' in html
        assert 'id="${token.uuid}"' in jelly and re.search(r'class="token-card[^"]*" id="[0-9a-f-]{36}"', html)
        assert ('jenkins-card' in jelly) == ("jenkins-card" in html)
        assert "token-list-existing-item" not in html and 'name="tokenUuid"' not in html
    else:  # up to 2.504: rows with hidden tokenUuid and tokenName inputs
        assert 'name="tokenUuid"' in jelly and re.search(r'name="tokenUuid" value="[0-9a-f-]{36}"', html)
        assert "token-list-existing-item" in html and "token-card" not in html
    assert ("api-token-add-template" in jelly) == ("api-token-add-template" in html)  # the expiry dialog, 2.548+


def test_texts_the_emulator_answers_with_come_from_the_bundles() -> None:
    messages = properties("Messages.properties@master")
    assert messages["ApiTokenProperty.expirationInPast"] == "Expiration date is in the past."
    assert messages["Token.Created.on"] == "Token created on {0}"
    security = properties("hudson-security-Messages.properties@master")
    assert security["AccessDeniedException2.MissingPermission"] == "{0} is missing the {1} permission"
    source = Path(emulator.__file__).read_text(encoding="utf-8")
    assert "Expiration date is in the past." in source
    assert "Token created on " in source
    assert "is missing the Overall/Administer permission" in source
    cards = properties("config.properties@2.548")
    html = page("2.548")
    assert cards["tokenExpiresOn"].replace("{0}", "__DATA__") in html
    assert cards["TokenNeverUsed"] in page("2.548", used=False)
    rows = properties("config.properties@2.479.3")
    assert rows["TokenNeverUsed"] in page("2.479.3", used=False)


def test_the_generate_answer_keys_are_the_javas() -> None:
    java = vendored("ApiTokenProperty.java@master")
    for key in ("tokenUuid", "tokenName", "tokenValue", "expirationDate", "aboutToExpire"):
        assert f'"{key}"' in java, key
    assert 'Integer.parseInt' in java and '"custom"' in java and '"never"' in java  # getExpirationDate's cases
