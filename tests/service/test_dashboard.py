"""The dashboard in a real headless Chromium: the attempts list, a live loss curve, a comparison."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import train_body, wait_finished
from .live import require_program

ARTIFACTS = Path(
    os.environ.get("KSHOT_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "build" / "test-artifacts")
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1500",
]


@pytest.fixture()
def browser():
    chromium, driver = require_program("chromium", "chromium"), require_program("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # The driver path is given, so Selenium never tries to download one.
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def _query(browser, selector: str, attribute: str | None = None):
    """An element's attribute (or text) read in one script call: the page redraws the list and the
    charts as data arrives, so a held element reference would go stale."""
    script = (
        "const e = document.querySelector(arguments[0]); "
        "return e ? (arguments[1] ? e.getAttribute(arguments[1]) : e.textContent) : null;"
    )
    return browser.execute_script(script, selector, attribute)


def _query_all(browser, selector: str, attribute: str | None = None) -> list:
    script = (
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(e => arguments[1] ? e.getAttribute(arguments[1]) : e.textContent);"
    )
    return browser.execute_script(script, selector, attribute)


def _click(wait, selector: str) -> None:
    """Click like a user, retrying if the list was redrawn between finding and clicking."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt(browser):
        try:
            browser.find_element(By.CSS_SELECTOR, selector).click()
            return True
        except (StaleElementReferenceException, NoSuchElementException):
            return False

    wait.until(attempt)


def test_dashboard_lists_attempts_and_draws_loss_curves(live, service_data, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    with live.client() as client:
        first = client.post("/train", json=train_body(service_data, "dash-first", meta_steps=5, eval_every=0)).json()
        wait_finished(client, first["id"])
        live_run = client.post(
            "/train", json=train_body(service_data, "dash-live", meta_steps=30, eval_every=10, seed=1)
        ).json()

        wait = WebDriverWait(browser, 60, poll_frequency=0.2)
        browser.get(live.url + "/")
        row = f"tr.attempt[data-id='{live_run['id']}']"
        wait.until(lambda b: _query(b, row, "data-id"))
        assert {"dash-first", "dash-live"} <= set(_query_all(browser, "#attempts td.name"))

        # Open the running attempt: its curve grows as steps arrive over the event stream.
        _click(wait, row)
        curve = "#loss-chart path.series[data-series='loss']"
        wait.until(lambda b: int(_query(b, curve, "data-points") or 0) >= 2)
        done = wait_finished(client, live_run["id"])
        assert done["status"] == "completed"
        wait.until(lambda b: _query(b, curve, "data-points") == "30")
        path = _query(browser, curve, "d")
        assert path.startswith("M") and path.count("L") == 29
        wait.until(lambda b: "completed" in _query(b, "#detail-status"))
        assert _query_all(browser, "#evaluations tbody tr")

        # Compare the two: both loss curves overlaid, accuracy per test task side by side.
        for attempt_id in (first["id"], live_run["id"]):
            _click(wait, f"tr.attempt[data-id='{attempt_id}'] input[type=checkbox]")
        _click(wait, "#compare-button")
        wait.until(lambda b: len(_query_all(b, "#compare-chart path.series")) == 2)
        series = dict(
            zip(
                _query_all(browser, "#compare-chart path.series", "data-series"),
                _query_all(browser, "#compare-chart path.series", "data-points"),
                strict=True,
            )
        )
        assert series == {"dash-first": "5", "dash-live": "30"}
        tasks = _query_all(browser, "#compare-table tbody tr td:first-child")
        assert tasks == ["domain6", "domain7"]
        assert len(_query_all(browser, "#compare-table tbody tr td")) == 6

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
