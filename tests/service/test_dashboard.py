"""The dashboard in a real headless Chromium: the attempts list, a live loss curve, a comparison."""

from __future__ import annotations

import os
import re
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
        # Over the raw loss, its moving average; the mean validation metric of every evaluation on its own axis.
        assert _query(browser, "#loss-chart path.series[data-series='loss_smoothed']", "data-points") == "30"
        evaluations = client.get(f"/attempts/{live_run['id']}/evaluations").json()
        validation_steps = {e["step"] for e in evaluations if e["split"] == "validation"}
        assert validation_steps
        validation = "#loss-chart path.series[data-series^='validation_']"
        wait.until(lambda b: _query(b, validation, "data-points") == str(len(validation_steps)))

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


# A param value is the user's text: the page must show it as text, never run it.
HOSTILE = '<img src=x onerror="window.__xss = 1">'


def _record_attempt(store, name: str, n_steps: int, validation_steps: tuple[int, ...]) -> None:
    """A finished trial attempt: a noisy (zigzag) loss per step and validation on two tasks."""
    attempt = store.create_attempt(name, "train", {"params": {"select_metric": "macro_f1", "meta_steps": n_steps}})
    for step in range(1, n_steps + 1):
        store.add_step(attempt.id, step, {"loss": 1.0 / (1 + 0.2 * step) + 0.15 * (-1) ** step})
    for step in validation_steps:
        tasks = {
            "books": {"accuracy": 0.6, "macro_f1": 0.5 + 0.02 * step, "n_query": 8},
            "dvd": {"accuracy": 0.5, "macro_f1": 0.4 + 0.02 * step, "n_query": 8},
        }
        store.add_evaluation(attempt.id, step, "validation", {"tasks": tasks})
    store.update_attempt(attempt.id, status="completed")


def _make_study(db_url: str, name: str) -> None:
    """A kshot study made in-process, without training: four complete trials, one pruned, one failed."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from kshot.config import KshotConfig, Params
    from kshot.tracking import AttemptStore
    from kshot.tuning import optuna_storage

    space = {
        "inner_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "inner_optimizer": {"type": "categorical", "choices": ["sgd", HOSTILE]},
    }
    distributions = {
        "inner_lr": FloatDistribution(1e-4, 1e-2, log=True),
        "inner_optimizer": CategoricalDistribution(["sgd", HOSTILE]),
    }
    study = optuna.create_study(storage=optuna_storage(db_url), study_name=name, direction="maximize")
    spec = {"config": KshotConfig().to_dict(), "params": Params().to_dict(), "space": space, "pruner": "median"}
    study.set_user_attr("kshot", spec)
    store = AttemptStore(db_url)
    trials = [  # number: (state, value, inner_lr, inner_optimizer, intermediate)
        (TrialState.COMPLETE, 0.60, 1e-4, "sgd", {10: 0.55, 20: 0.60}),
        (TrialState.COMPLETE, 0.80, 1e-3, "sgd", {10: 0.70, 20: 0.80}),
        (TrialState.PRUNED, None, 5e-3, "sgd", {10: 0.40}),
        (TrialState.COMPLETE, 0.70, 2e-3, HOSTILE, {10: 0.65, 20: 0.70}),
        (TrialState.FAIL, None, 8e-3, HOSTILE, {}),
        (TrialState.COMPLETE, 0.85, 5e-4, HOSTILE, {10: 0.75, 20: 0.85}),
    ]
    for number, (trial_state, value, lr, optimizer, intermediate) in enumerate(trials):
        attempt = f"{name}-trial-{number:04d}"
        study.add_trial(
            create_trial(
                state=trial_state,
                value=value,
                params={"inner_lr": lr, "inner_optimizer": optimizer},
                distributions=distributions,
                user_attrs={"attempt": attempt},
                intermediate_values=intermediate,
            )
        )
    _record_attempt(store, f"{name}-trial-0005", 20, (5, 10, 15, 20))
    _record_attempt(store, f"{name}-trial-0001", 12, (6, 12))


def _path_ys(d: str) -> list[float]:
    """The y coordinate of every vertex of an SVG path made of M/L (or M/H/V) commands."""
    ys, y = [], None
    for command, numbers in re.findall(r"([MLHV])([-\d.,]+)", d):
        if command in "ML":
            y = float(numbers.split(",")[1])
        elif command == "V":
            y = float(numbers)
        else:
            continue
        ys.append(y)
    return ys


def test_dashboard_shows_a_study_and_opens_a_trials_loss_curve(live, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    name = "dash-study"
    _make_study(live.env["KSHOT_DATABASE_URL"], name)
    with live.client() as client:
        importance = client.get(f"/studies/{name}").json()["importance"]

    wait = WebDriverWait(browser, 30, poll_frequency=0.2)
    browser.get(live.url + "/")
    row = f"#studies tr.study[data-name='{name}']"
    wait.until(lambda b: _query(b, row, "data-name"))
    # Listed with its trials by state and the best value.
    states = _query_all(browser, f"{row} td.trials .state", "data-state")
    counts = _query_all(browser, f"{row} td.trials .state")
    assert dict(zip(states, counts, strict=True)) == {"complete": "4 complete", "pruned": "1 pruned", "fail": "1 fail"}
    assert _query(browser, f"{row} td.best") == "0.850 (trial 5)"

    # The study view: one point per complete trial, the pruned one hollow, the failed one in a note.
    _click(wait, row)
    complete = "#study-chart circle.trial[data-state='complete']"
    wait.until(lambda b: len(_query_all(b, complete)) == 4)
    assert _query_all(browser, complete, "data-trial") == ["0", "1", "3", "5"]
    assert _query_all(browser, "#study-chart circle.trial[data-state='pruned']", "data-trial") == ["2"]
    assert "1 fail" in _query(browser, "#study-note")
    best = "#study-chart path.series[data-series='best']"
    values = [float(v) for v in _query(browser, best, "data-values").split(",")]
    assert values == [0.6, 0.8, 0.8, 0.85]
    ys = _path_ys(_query(browser, best, "d"))  # SVG y grows downwards: a rising best only goes up the page
    assert len(ys) == 4 and all(a >= b for a, b in zip(ys, ys[1:]))
    assert ys[0] > ys[-1]
    # Importance: one bar per param the service scored, the largest first.
    bars = _query_all(browser, "#importance-chart rect.bar", "data-param")
    assert importance and sorted(bars) == sorted(importance)
    assert bars[0] == max(importance, key=importance.get)
    # The trials table, the user's param text shown as text and never run as HTML.
    assert _query_all(browser, "#trials tbody tr.trial", "data-number") == ["0", "1", "2", "3", "4", "5"]
    assert HOSTILE in _query_all(browser, "#trials tbody td.param")
    assert HOSTILE in _query(browser, "#study-space")
    assert browser.execute_script("return document.querySelectorAll('main img').length") == 0
    assert browser.execute_script("return window.__xss") is None

    # Clicking the best trial's point opens its attempt: raw loss, its moving average, validation.
    _click(wait, "#study-chart circle.trial[data-trial='5']")
    wait.until(lambda b: (_query(b, "#detail-title") or "").startswith(f"{name}-trial-0005"))
    raw = "#loss-chart path.series[data-series='loss']"
    smoothed = "#loss-chart path.series[data-series='loss_smoothed']"
    validation = "#loss-chart path.series[data-series='validation_macro_f1']"
    wait.until(lambda b: _query(b, raw, "data-points") == "20" and _query(b, validation, "data-points") == "4")
    assert _query(browser, smoothed, "data-points") == "20"

    def variation(selector: str) -> float:
        ys = _path_ys(_query(browser, selector, "d"))
        return sum(abs(a - b) for a, b in zip(ys, ys[1:]))

    assert variation(smoothed) < variation(raw) / 2
    # Mean validation macro-F1 rises with the step (0.55, 0.65, ...): its line rises on its own axis.
    val_ys = _path_ys(_query(browser, validation, "d"))
    assert all(a > b for a, b in zip(val_ys, val_ys[1:]))
    assert len(_query_all(browser, "#loss-chart circle.point[data-series='validation_macro_f1']")) == 4
    assert "validation macro_f1" in _query(browser, "#loss-legend")
    assert _query(browser, "#study-chart circle.trial.selected", "data-trial") == "5"

    # A row of the table opens its trial too.
    _click(wait, "#trials tbody tr.trial[data-number='1']")
    wait.until(lambda b: (_query(b, "#detail-title") or "").startswith(f"{name}-trial-0001"))
    wait.until(lambda b: _query(b, raw, "data-points") == "12" and _query(b, validation, "data-points") == "2")
    assert "selected" in _query(browser, "#trials tbody tr.trial[data-number='1']", "class")

    errors = [
        e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]
    ]
    assert not errors

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-study.png"))
