"""The browser page in headless Chromium: a WAV file stands in for the microphone (Chromium's
fake media stream), and the page must get accompaniment back and update its meters."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.browser import headless_chromium
from tests.helpers import RunningServer, models_dir


@pytest.fixture(scope="module")
def page_server(
    tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    server = RunningServer(models_dir(tmp_path_factory.mktemp("page_models"), tiny_checkpoint))
    yield server
    server.stop()


def chromium(microphone: Path):  # type: ignore[no-untyped-def]
    return headless_chromium(
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",
    )


def test_the_page_streams_the_microphone_and_updates_its_meters(
    page_server: RunningServer, live_recording: np.ndarray, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    microphone = tmp_path / "microphone.wav"
    sf.write(microphone, live_recording, 48_000, subtype="PCM_16")
    browser = chromium(microphone)
    try:
        browser.get(page_server.url + "/")
        assert browser.find_element(By.ID, "compute").text == "—"
        browser.find_element(By.ID, "start").click()
        deadline = time.monotonic() + 30
        stats: dict = {}
        while time.monotonic() < deadline:
            stats = browser.execute_script("return window.bandmate.stats")
            if stats["receivedSamples"] >= 2 * 48_000 and stats["telemetry"] >= 3:
                break
            time.sleep(0.25)
        assert stats["receivedSamples"] >= 2 * 48_000, stats
        assert stats["receivedEnergy"] > 0, "only silence came back"
        assert stats["errors"] == [], stats["errors"]
        compute = browser.find_element(By.ID, "compute").text
        assert compute.endswith("ms") and compute != "—"
        assert browser.find_element(By.ID, "misses").text.isdigit()
        assert "live" in browser.find_element(By.ID, "status").text
        browser.save_screenshot(str(tmp_path / "page.png"))
        if os.environ.get("BANDMATE_SCREENSHOT"):
            shutil.copy(tmp_path / "page.png", os.environ["BANDMATE_SCREENSHOT"])
        # The server goes away: the page says so, readably, and tries to reconnect.
        page_server.stop()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not browser.find_element(By.ID, "error").text:
            time.sleep(0.25)
        assert "Reconnecting" in browser.find_element(By.ID, "error").text
    finally:
        browser.quit()
