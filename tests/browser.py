"""Headless Chromium driven by selenium, as the page tests use it (Debian's chromium and
chromium-driver, which `make test` installs); their screenshots are kept to look at."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
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


def screenshot(browser: Any, tmp_path: Path, name: str) -> Path:
    """The page as it looks now, as `tmp_path/name.png`; copied to $BANDMATE_SCREENSHOTS when
    that is set, to look at."""
    path = tmp_path / f"{name}.png"
    browser.save_screenshot(str(path))
    if os.environ.get("BANDMATE_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["BANDMATE_SCREENSHOTS"]) / path.name)
    return path
