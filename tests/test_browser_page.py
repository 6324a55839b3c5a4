"""The browser page in headless Chromium: a WAV file stands in for the microphone (Chromium's
fake media stream), and the page must get accompaniment back and update its meters; show
the token field and the valence only where they apply; turn compute and misses a warning
colour when the server falls behind; and clear its meters when the stream stops.
Screenshots are kept (under $BANDMATE_SCREENSHOTS when set) to look at."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from pythonosc.udp_client import SimpleUDPClient

from tests.bci_probe import wait_until
from tests.browser import headless_chromium, screenshot
from tests.helpers import RunningServer, free_udp_port, models_dir

# Slow, so not in `make test-quick`: every test here drives a real server's page in headless
# Chromium.
pytestmark = pytest.mark.slow

METERS = ("latency", "compute", "rtf", "misses", "dropped", "valence")
BARS = ("rtf-bar", "valence-bar", "input-bar", "output-bar")
WARNING_RED = "rgba(229, 100, 110, 1)"  # style.css --bad


@pytest.fixture(scope="module")
def offered(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models_dir(tmp_path_factory.mktemp("page_models"), tiny_checkpoint)


@pytest.fixture(scope="module")
def osc_port() -> int:
    return free_udp_port()


@pytest.fixture(scope="module")
def page_server(offered: Path, osc_port: int) -> Iterator[RunningServer]:
    """A server whose OSC control is on: an EEG loop sends its valence that way."""
    server = RunningServer(offered, "--osc-port", str(osc_port))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def microphone(live_recording: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("microphone") / "microphone.wav"
    sf.write(path, live_recording, 48_000, subtype="PCM_16")
    return path


@pytest.fixture
def browser(microphone: Path) -> Iterator[Any]:
    started = headless_chromium(
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",
    )
    yield started
    started.quit()


def by_id(browser: Any, element: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element)


def stats(browser: Any) -> dict[str, Any]:
    return dict(browser.execute_script("return window.bandmate.stats"))


def start_streaming(browser: Any, server: RunningServer, telemetry: int = 3) -> None:
    """Open the page, press Start, and wait for accompaniment and `telemetry` messages."""
    browser.get(server.url + "/")
    by_id(browser, "start").click()
    wait_until(lambda: stats(browser)["receivedSamples"] >= 48_000
               and stats(browser)["telemetry"] >= telemetry, 30, "the page streaming")  # fmt: skip


def warned(browser: Any, element: str) -> bool:
    return "warn" in by_id(browser, element).get_attribute("class").split()


def test_the_page_streams_the_microphone_and_updates_its_meters(
    offered: Path, browser: Any, tmp_path: Path
) -> None:
    server = RunningServer(offered)  # its own: this test stops it
    try:
        browser.get(server.url + "/")
        assert by_id(browser, "compute").text == "—"
        by_id(browser, "start").click()
        wait_until(lambda: stats(browser)["receivedSamples"] >= 2 * 48_000
                   and stats(browser)["telemetry"] >= 3, 30, "two seconds back")  # fmt: skip
        assert stats(browser)["receivedEnergy"] > 0, "only silence came back"
        assert stats(browser)["errors"] == [], stats(browser)["errors"]
        compute = by_id(browser, "compute").text
        assert compute.endswith("ms") and compute != "—"
        assert by_id(browser, "misses").text.isdigit()
        assert "live" in by_id(browser, "status").text
        screenshot(browser, tmp_path, "page_streaming")
        # The server goes away: the page says so, readably, and tries to reconnect.
        server.stop()
        wait_until(lambda: bool(by_id(browser, "error").text), 15, "the page noticing")
        assert "Reconnecting" in by_id(browser, "error").text
    finally:
        server.stop()


def test_the_token_field_shows_only_where_the_server_needs_one(
    page_server: RunningServer, offered: Path, browser: Any, tmp_path: Path
) -> None:
    browser.get(page_server.url + "/")
    wait_until(lambda: by_id(browser, "checkpoint").text != "", 15, "the checkpoints listed")
    assert not by_id(browser, "token-field").is_displayed()
    screenshot(browser, tmp_path, "page_no_token")
    guarded = RunningServer(offered, "--token", "sesame")
    try:
        browser.get(guarded.url + "/")
        wait_until(lambda: by_id(browser, "token-field").is_displayed(), 15, "the token field")
        assert "needs a token" in by_id(browser, "error").text
        screenshot(browser, tmp_path, "page_token")
    finally:
        guarded.stop()


def test_the_valence_shows_only_while_an_eeg_loop_sends_it(
    page_server: RunningServer, osc_port: int, browser: Any, tmp_path: Path
) -> None:
    start_streaming(browser, page_server)
    assert not by_id(browser, "valence-meter").is_displayed()
    # What `bandmate bci run --server-osc` sends for every EEG window.
    SimpleUDPClient("127.0.0.1", osc_port).send_message("/bandmate/valence", 0.4)
    wait_until(lambda: by_id(browser, "valence-meter").is_displayed(), 15, "the valence meter")
    assert by_id(browser, "valence").text == "0.40"
    screenshot(browser, tmp_path, "page_valence")


def test_compute_above_the_hop_and_misses_turn_the_warning_colour(
    page_server: RunningServer, browser: Any, tmp_path: Path
) -> None:
    """The server is starved for real: stopped (SIGSTOP) for 40 ms, let run for 3 ms, for
    2 s. Its backlog keeps it busy in every slice it gets, so most stops catch a step, which
    then takes longer than the 21.3 ms hop, and the blocks wait past their deadline."""
    start_streaming(browser, page_server)
    assert not warned(browser, "compute") and not warned(browser, "misses")
    try:
        for _ in range(50):
            os.kill(page_server.process.pid, signal.SIGSTOP)
            time.sleep(0.04)
            os.kill(page_server.process.pid, signal.SIGCONT)
            time.sleep(0.003)
    finally:
        os.kill(page_server.process.pid, signal.SIGCONT)
    wait_until(lambda: warned(browser, "compute") and warned(browser, "misses"), 15,
               "compute and misses in the warning colour")  # fmt: skip
    p99_ms = float(by_id(browser, "compute").text.split("/")[1].split()[0])
    assert p99_ms > 1024 / 48, "warned below the hop"
    for element in ("compute", "misses"):
        assert by_id(browser, element).value_of_css_property("color") == WARNING_RED
    assert not warned(browser, "rtf")
    screenshot(browser, tmp_path, "page_warnings")


def test_the_meters_clear_when_the_stream_stops(
    page_server: RunningServer, osc_port: int, browser: Any, tmp_path: Path
) -> None:
    start_streaming(browser, page_server)
    SimpleUDPClient("127.0.0.1", osc_port).send_message("/bandmate/valence", -0.5)
    wait_until(lambda: by_id(browser, "valence-meter").is_displayed(), 15, "the valence meter")
    assert all(by_id(browser, m).text != "—" for m in METERS)
    by_id(browser, "stop").click()
    wait_until(lambda: "not connected" in by_id(browser, "status").text, 10, "the page stopping")
    time.sleep(0.3)  # a block or telemetry in flight must not bring a figure back
    assert [by_id(browser, m).get_attribute("textContent") for m in METERS] == ["—"] * 6
    assert [by_id(browser, b).get_attribute("style") for b in BARS] == ["width: 0%;"] * 4
    assert not by_id(browser, "valence-meter").is_displayed()
    screenshot(browser, tmp_path, "page_stopped")
