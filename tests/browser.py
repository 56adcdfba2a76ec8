"""Headless Chromium for page tests: Debian's ``chromium`` and ``chromium-driver``, driven by selenium.

Never downloads a browser or a driver: it uses the binaries on PATH (``make browser``, part of
``make test``, installs them). Where they are missing the test fails, saying how to install them: it
never skips. Every wait is bounded.

    from browser import chromium, file_url, wait_until

    def test_page(tmp_path):
        with chromium(tmp_path) as driver:
            driver.get(file_url(tmp_path / "page.html"))
            wait_until(driver, lambda d: d.title == "My page")
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TIMEOUT = 20.0  # seconds: page load, scripts, and each wait_until
FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--window-size=1280,900",
)


def _unavailable(reason: str) -> None:
    """A missing browser is a failure, not a skip: `make test` installs it (`make browser`)."""
    pytest.fail(f"{reason} (install it with `make browser`)")


def binaries() -> tuple[str, str]:
    """Paths of chromium and chromedriver, or fail the test."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        _unavailable("Debian's chromium and chromium-driver are not installed")
    return browser, driver


@contextlib.contextmanager
def chromium(profile_dir: str | os.PathLike, timeout: float = TIMEOUT) -> Iterator[Any]:
    """A selenium WebDriver on a fresh headless Chromium whose profile lives in ``profile_dir``."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[dev]')")
    browser, driver_path = binaries()
    profile = Path(profile_dir) / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(executable_path=driver_path, log_output=str(Path(profile_dir) / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(timeout)
        driver.set_script_timeout(timeout)
        yield driver
    finally:
        driver.quit()


def file_url(path: str | os.PathLike) -> str:
    return Path(path).resolve().as_uri()


def wait_until(driver: Any, condition: Callable[[Any], Any], timeout: float = TIMEOUT) -> Any:
    """Poll ``condition(driver)`` until it is truthy (returned) or ``timeout`` seconds pass (AssertionError)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise AssertionError(f"condition not met within {timeout} s on {driver.current_url}") from None


def console_errors(driver: Any) -> list[str]:
    """Severe messages of the page's console (JavaScript errors), where the driver exposes the log."""
    try:
        return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    except Exception:  # noqa: BLE001 - not every driver offers the log
        return []
