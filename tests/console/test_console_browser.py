"""The operator console in a real headless Chromium, over a real 2-replica fleet with
bearer tokens: the fleet page, a message and its reply, suspend and resume, a read
token's pages (and a forged action refused by the console), and owners moving live
when a replica is killed. Each page's screenshot goes to test-artifacts/console/."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from mobkit.example import CONFIG, ROSTER, example_path
from mobkit.security.auth import issue_token
from mobkit.testing.fleet import Fleet, wait_fleet
from mobkit.testing.processes import ServeProcess

TEAM = ("coordinator", "worker-1", "worker-2", "worker-3")
TTL = 2.0
WAIT_MS = 20_000  # every wait for the page is bounded
REPLICA = re.compile(r"^r[01]$")

pytestmark = pytest.mark.timeout(900)  # a fresh machine installs chromium first (apt-get)


@dataclass
class Suite:
    fleet: Fleet
    replicas: list[ServeProcess]
    console: ServeProcess
    admin: str
    viewer: str
    writer: str

    @property
    def url(self) -> str:
        return f"http://{self.console.address}/"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, etcd_session: Any) -> Iterator[Suite]:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    tmp = tmp_path_factory.mktemp("console")
    tokens = tmp / "tokens.toml"
    admin = issue_token(tokens, "operator", ["admin"])
    viewer = issue_token(tokens, "dashboard", ["read"])
    writer = issue_token(tokens, "app", ["write"])
    (tmp / "suite.token").write_text(issue_token(tokens, "suite", ["admin"]))
    auth = ["--auth-tokens-file", str(tokens), "--call-token-file", str(tmp / "suite.token")]
    fleet = Fleet(tmp, etcd_session.endpoint, example_path(ROSTER), TTL)
    console = None
    try:
        extra = ["--config", str(example_path(CONFIG)), *auth]
        replicas = [fleet.add(name, extra=extra) for name in ("r0", "r1")]
        # Playwright's sync API holds this thread's event loop: poll from another thread.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _spread(replicas[0].address, tmp / "suite.token")).result()
        console = ServeProcess(
            "console",
            ["--orchestrator-addr", str(replicas[0].address), *auth, "--log-level", "WARNING"],
            log_dir=tmp,
        ).start()
        yield Suite(fleet, replicas, console, admin, viewer, writer)
    finally:
        if console is not None:
            console.stop()
        fleet.close()


async def _spread(address: str | None, token_file: Path) -> None:
    from mobkit.security.auth import bearer_token_interceptors, read_token_file

    interceptors = bearer_token_interceptors(read_token_file(token_file))
    assert address is not None
    async with grpc.aio.insecure_channel(address, interceptors=interceptors) as channel:
        await wait_fleet(channel, len(TEAM), owners=2, timeout=90)


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def _login(page: Any, suite: Suite, token: str) -> None:
    page.goto(suite.url)
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#fleet-rows tr", timeout=WAIT_MS)


def _owners(page: Any) -> dict[str, str]:
    rows = page.locator("#fleet-rows tr")
    return {
        rows.nth(i).get_attribute("data-identity"): rows.nth(i).locator(".owner").inner_text()
        for i in range(rows.count())
    }


def test_fleet_lists_the_example_team_with_states_and_owners(
    page: Any, suite: Suite, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    _login(page, suite, suite.admin)
    for identity in TEAM:
        row = page.locator(f'#fleet-rows tr[data-identity="{identity}"]')
        expect(row.locator(".state")).to_have_text("Active")
        expect(row.locator(".owner")).to_have_text(REPLICA)
    assert set(_owners(page).values()) == {"r0", "r1"}
    expect(page.locator('#counts span[data-state="active"]')).to_have_text("Active 4")
    expect(page.locator("#replicas span")).to_have_count(2)
    page.screenshot(path=artifacts / "fleet.png", full_page=True)
    page.fill("#filter-label", "role=coordinator")
    page.press("#filter-label", "Enter")
    expect(page.locator("#fleet-rows tr")).to_have_count(1)
    expect(page.locator("#fleet-rows tr").first).to_have_attribute("data-identity", "coordinator")
    page.select_option("#filter-state", "suspended")
    expect(page.locator("#fleet-rows tr")).to_have_count(0)
    expect(page.locator('#counts span[data-state="active"]')).to_have_text("Active 4")


def test_a_message_sent_from_an_identity_page_shows_the_reply(
    page: Any, suite: Suite, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    _login(page, suite, suite.admin)
    page.click('a[href="#/identity/coordinator"]')
    expect(page.locator('dd[data-field="state"]')).to_have_text("Active")
    page.fill("#message", "remember the milk")
    page.click("#send")
    expect(page.locator("#reply")).to_have_attribute("data-done", "1")
    expect(page.locator("#reply")).to_contain_text("the milk")
    expect(page.locator("#reply")).to_contain_text("[coordinator turn")
    expect(page.locator("#peers li")).to_have_count(3)  # the hub's edges
    expect(page.locator("#turns tr").first).to_be_visible()  # its turn, from the event log
    page.screenshot(path=artifacts / "identity.png", full_page=True)


def test_suspend_shows_suspended_and_resume_shows_active(page: Any, suite: Suite) -> None:
    from playwright.sync_api import expect

    _login(page, suite, suite.admin)
    page.goto(suite.url + "#/identity/worker-2")
    state = page.locator('dd[data-field="state"]')
    expect(state).to_have_text("Active")
    page.click('button[data-action="suspend"]')
    expect(page.locator("#confirm")).to_be_visible()
    page.click("#confirm-no")  # a cancelled confirmation does nothing
    expect(state).to_have_text("Active")
    page.click('button[data-action="suspend"]')
    page.click("#confirm-yes")
    expect(state).to_have_text("Suspended")
    page.click('button[data-action="resume"]')
    page.click("#confirm-yes")
    expect(state).to_have_text("Active")


def _post(url: str, token: str, body: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "x-mobkit-console": "1"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_read_token_sees_no_action_buttons_and_a_forged_action_is_refused(
    page: Any, suite: Suite
) -> None:
    from playwright.sync_api import expect

    _login(page, suite, suite.viewer)
    expect(page.locator("#who")).to_have_text("dashboard")
    page.goto(suite.url + "#/identity/worker-1")
    expect(page.locator('dd[data-field="state"]')).to_have_text("Active")
    expect(page.locator("button[data-action]")).to_have_count(0)
    expect(page.locator("#send")).to_have_count(0)
    expect(page.locator("#message")).to_have_count(0)
    # The page's own cookie, forging the request its buttons would have made.
    forged = page.request.post(
        suite.url + "api/identities/worker-1/suspend", headers={"x-mobkit-console": "1"}
    )
    assert forged.status == 403, forged.text()
    assert forged.json()["error"]["reason"] == "PERMISSION_DENIED"
    status, body = _post(suite.url + "api/identities/worker-1/send", suite.viewer, {"text": "x"})
    assert (status, body["error"]["reason"]) == (403, "PERMISSION_DENIED")
    # Without the console's header (a cross-site form), even an admin is refused.
    cross_site = page.request.post(suite.url + "api/identities/worker-1/suspend")
    assert cross_site.status == 403
    page.reload()
    expect(page.locator('dd[data-field="state"]')).to_have_text("Active")
    status, _ = _post(suite.url + "api/login", "", {"token": "mbk_not-a-token"})
    assert status == 401
    # write sends but may not suspend (admin's), as on the gRPC API.
    status, body = _post(suite.url + "api/identities/worker-1/suspend", suite.writer)
    assert (status, body["error"]["reason"]) == (403, "PERMISSION_DENIED")
    assert body["error"]["metadata"]["required_scope"] == "admin"


def test_topology_events_modules_and_flows_pages(page: Any, suite: Suite, artifacts: Path) -> None:
    from playwright.sync_api import expect

    _login(page, suite, suite.admin)
    page.goto(suite.url + "#/topology")
    expect(page.locator("#graph")).to_have_attribute("data-edges", "3")
    expect(page.locator("#graph")).to_have_attribute("data-nodes", "4")
    page.screenshot(path=artifacts / "topology.png", full_page=True)
    page.goto(suite.url + "#/events")
    expect(page.locator('#event-rows tr:has-text("activated")').first).to_be_visible()
    page.fill("#filter-kind", "turn_completed")
    expect(page.locator("#event-rows tr").first).to_contain_text("turn_completed")
    page.screenshot(path=artifacts / "events.png", full_page=True)
    page.goto(suite.url + "#/modules")
    expect(page.locator('#module-rows tr[data-module="clock"]')).to_contain_text("healthy")
    page.screenshot(path=artifacts / "modules.png", full_page=True)
    page.goto(suite.url + "#/flows")
    expect(page.locator('#flow-rows tr[data-flow="ask-team"]')).to_be_visible()
    page.screenshot(path=artifacts / "flows.png", full_page=True)


def test_killing_a_replica_moves_its_identities_live(page: Any, suite: Suite) -> None:
    """The page stays open (no reload): the survivor's activations arrive as events.
    The wait is TTL + 2 s from the kill, as the console promises operators."""
    from playwright.sync_api import expect

    _login(page, suite, suite.admin)
    expect(page.locator("#live")).to_have_text("live")
    owners = _owners(page)
    orphans = sorted(i for i, owner in owners.items() if owner == "r1")
    assert orphans, owners
    suite.replicas[1].kill()
    for identity in orphans:
        row = page.locator(f'#fleet-rows tr[data-identity="{identity}"]')
        expect(row.locator(".owner")).to_have_text("r0", timeout=(TTL + 2) * 1000)
    expect(page.locator("#replicas span")).to_have_count(1)
    expect(page.locator('#replicas span[data-replica="r0"]')).to_have_text("r0: 4 owned")
