"""The console in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright, against a real server.

CI installs Chromium (.ci/run) and these tests never skip there; on a machine without it they skip and say why.
``REFIT_UPDATE_SCREENSHOT=1`` also saves the model page to docs/dashboard.png, the README's picture.
"""
import os
import shutil

import pytest
import requests

from backend import demo
from tests.helpers import ROOT

KEY = "browser-key"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing(reason: str):
    if os.environ.get("CI") == "true":  # CI must run the browser tests, never skip them
        pytest.fail(f"{reason} (CI runs the browser tests: .ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (requirements-dev.txt)")
    if CHROMIUM is None:
        _missing("no chromium on PATH (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A fresh page that records every console error and uncaught exception in ``page.problems``."""
    opened = browser.new_page(viewport={"width": 1360, "height": 900})
    opened.problems = []
    opened.on("console", lambda m: opened.problems.append(f"console: {m.text}") if m.type == "error" else None)
    opened.on("pageerror", lambda e: opened.problems.append(f"page error: {e}"))
    yield opened
    opened.close()


@pytest.mark.server
def test_the_console_follows_a_training_as_it_happens(page, trained_config, servers, tmp_path):
    from playwright.sync_api import expect

    server = servers(trained_config, env={"REFIT_API_KEY": KEY})
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {KEY}"
    for seed in range(3):  # labelled rows the served v1 scores live: the overview's chart gets three windows
        assert api.post(f"{server.url}/api/parima/samples", json={"samples": demo.rows(100, seed=10 + seed)},
                        timeout=10).status_code == 201

    page.goto(f"{server.url}/dashboard")
    card = page.locator("#card-parima")
    expect(card.locator("[data-field=version]")).to_have_text("v1")
    expect(card.locator("[data-field=samples]")).to_have_text("300")
    expect(card.locator(".line-chart .point")).to_have_count(3)
    expect(page.locator("#live")).to_have_text("live")
    page.screenshot(path=tmp_path / "overview.png", full_page=True)

    # the model page: its buttons say why they are disabled until the API key is given, once
    page.click("header nav >> text=parima")
    train = page.locator("#train")
    expect(page.locator("#versions tr[data-version=v1]")).to_be_visible()
    expect(train).to_be_disabled()
    assert "API key" in train.get_attribute("title")
    page.fill("#key-input", KEY)
    page.click("#key-form button")
    expect(train).to_be_enabled()
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate("""() => {
        window.seen = []; window.marker = "the same page";
        const bar = document.getElementById("train-progress");
        new MutationObserver(() => window.seen.push(Number(bar.value)))
            .observe(bar, {attributes: true, attributeFilter: ["value"]});
    }""")
    train.click()
    expect(page.locator("#versions tr[data-version=v2]")).to_be_visible(timeout=120_000)  # no reload
    expect(page.locator("#job-stage")).to_contain_text("completed")
    assert page.evaluate("window.marker") == "the same page"
    seen = page.evaluate("window.seen")
    assert seen == sorted(seen) and seen[-1] == 100 and any(0 < value < 100 for value in seen), seen
    expect(page.locator(".toast", has_text="parima: MODEL_")).to_be_visible()  # promoted or rejected, as it came
    expect(page.locator("#metric-chart .point")).to_have_count(2)
    expect(page.locator("#plots img").first).to_be_visible()
    job_id = page.locator("#job-id").text_content()
    page.screenshot(path=tmp_path / "model.png", full_page=True)
    if os.environ.get("REFIT_UPDATE_SCREENSHOT") == "1":
        page.screenshot(path=ROOT / "docs" / "dashboard.png")

    page.click("header nav >> text=Jobs")
    expect(page.locator(f"#jobs tr[data-job='{job_id}'] .badge")).to_have_text("completed")
    page.screenshot(path=tmp_path / "jobs.png", full_page=True)

    # the history page shows events as they are written, and a toast tells of the notification
    page.goto(f"{server.url}/dashboard/history?model=parima")
    expect(page.locator("#history tbody tr").first).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")
    assert api.post(f"{server.url}/api/parima/versions/v1/activate", json={"force": True}, timeout=10).ok
    expect(page.locator("#history tr.fresh", has_text="MODEL_ACTIVATED")).to_be_visible()
    expect(page.locator(".toast", has_text="parima: MODEL_ACTIVATED")).to_be_visible()
    page.screenshot(path=tmp_path / "history.png", full_page=True)
    page.select_option("#filter-type", "TRAINING_STARTED")  # the filter is kept in the address
    expect(page).to_have_url(f"{server.url}/dashboard/history?model=parima&event_type=TRAINING_STARTED")
    expect(page.locator("#history tbody tr")).to_have_count(2)  # v1's and v2's trainings
    expect(page.locator("#history tbody tr", has_text="MODEL_ACTIVATED")).to_have_count(0)

    page.click("header nav >> text=Experiments")
    expect(page.locator("h1")).to_have_text("Experiments")
    page.screenshot(path=tmp_path / "experiments.png", full_page=True)

    page.goto(f"{server.url}/docs")  # Swagger UI over /openapi.json, from files the server holds
    expect(page.locator('.opblock-summary-path[data-path="/api/{model}/predict"]')).to_be_visible()
    page.screenshot(path=tmp_path / "docs.png")
    assert page.problems == []
    assert {p.name for p in tmp_path.glob("*.png")} >= {"overview.png", "model.png", "jobs.png", "history.png",
                                                        "experiments.png", "docs.png"}
