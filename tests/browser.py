"""Headless Chromium driven by selenium, as the page tests use it (Debian's chromium and
chromium-driver, which `make test` installs)."""

from __future__ import annotations

import shutil
from typing import Any


def headless_chromium(*flags: str) -> Any:
    """A started headless Chromium (a selenium WebDriver) with these extra flags; quit it."""
    import pytest
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        pytest.fail("chromium is missing: `make test` installs Debian chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")  # type: ignore[assignment]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,760",
                 *flags):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
