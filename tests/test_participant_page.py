"""What the participant sees and hears: the page `session run` serves, in headless Chromium.

A real `bandmate session run` (simulated EEG) serves the page; Chromium opens it, presses
Start, and goes through the session as a participant would: the instruction with its
get-ready countdown, the fixation cross with the time left, the end-of-block tone, the SAM
scales (manikins, clicked and keyed). Every cue and rating must arrive as an LSL marker, read
by a real inlet. Screenshots are kept (under $BANDMATE_SCREENSHOTS when set) to look at."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pylsl
import pytest

from bci.experiment.recorder import read_session
from bci.live.simulate import Schedule, Simulator, SimulatorConfig
from tests.bci_probe import wait_until
from tests.browser import headless_chromium, screenshot
from tests.helpers import BANDMATE

# Slow, so not in `make test-quick`: every test here drives a real `session run`'s page in headless
# Chromium.
pytestmark = pytest.mark.slow

PROTOCOL = """\
name: page test
version: 1
baseline_block: eyes_closed
blocks:
  - {name: eyes_closed, kind: baseline_eyes_closed, duration_s: 4,
     instruction: Close your eyes and relax until you hear the tone.}
  - {name: happy, kind: emotion, target_emotion: happy, duration_s: 5,
     instruction: Recall a happy memory.}
sequence: [eyes_closed, happy]
"""


class Session:
    """`bandmate session run` of PROTOCOL for P01 with the page on a free port; stdout is read
    by a thread, stdin takes the experimenter's commands; an LSL inlet on its markers."""

    def __init__(self, tmp_path: Path, stream: str):
        protocol = tmp_path / "protocol.yaml"
        protocol.write_text(PROTOCOL)
        self.folder = tmp_path / "study" / "raw" / "sub-P01" / "ses-01"
        self.process = subprocess.Popen(
            [BANDMATE, "session", "run", str(protocol), "--participant", "P01", "--out",
             str(tmp_path / "study"), "--stream", stream, "--synth-driver", "none"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_line(r"participant page: (\S+)").group(1)
        [info] = pylsl.resolve_byprop("source_id", "bandmate-markers-P01", timeout=10)
        self.inlet = pylsl.StreamInlet(info)
        self.inlet.open_stream(timeout=5)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def _wait_for_line(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                match = re.search(pattern, self.lines.get(timeout=0.5))
            except queue.Empty:
                assert self.process.poll() is None, self.process.communicate()[1]
                continue
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} in 60 s")

    def type(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def finish(self) -> list[dict[str, Any]]:
        """Wait for the exit; the markers the inlet received."""
        assert self.process.wait(timeout=90) == 0, self.process.communicate()[1]
        markers: list[dict[str, Any]] = []
        while True:
            sample, _ = self.inlet.pull_sample(timeout=0.5)
            if sample is None:
                return markers
            markers.append(json.loads(sample[0]))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    name = f"sim-{uuid.uuid4().hex[:8]}"
    simulator = Simulator(SimulatorConfig(name=name, source_id=name), Schedule())
    simulator.start()
    running = Session(tmp_path, name)
    yield running
    running.kill()
    simulator.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = headless_chromium()  # the default autoplay policy: sound needs the Start click
    yield driver
    driver.quit()


def screen_becomes(browser: Any, screen: str, timeout_s: float = 30.0) -> None:
    wait_until(lambda: browser.execute_script("return window.bandmate.screen") == screen,
               timeout_s, f"the page showing {screen}")  # fmt: skip


def test_the_page_shows_instructions_cross_countdowns_tone_and_sam_scales(
    session: Session, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    def element(id_: str) -> Any:
        return browser.find_element(By.ID, id_)

    browser.get(session.url)
    wait_until(lambda: element("start").is_displayed(), 30, "the Start button")
    assert "press Start" in element("welcome-text").text
    screenshot(browser, tmp_path, "welcome")
    element("start").click()

    screen_becomes(browser, "ready")
    assert element("instruction").text == "Close your eyes and relax until you hear the tone."
    assert element("countdown").text.startswith("Starting in ")
    screen_becomes(browser, "block")
    assert element("fixation").is_displayed()
    assert re.fullmatch(r"0:0[0-4]", element("countdown").text), element("countdown").text
    screenshot(browser, tmp_path, "fixation")

    screen_becomes(browser, "rating")
    assert "pleasant" in element("sam-title").text
    choices = browser.find_elements(By.CSS_SELECTOR, "#sam-scale .sam-choice")
    assert [c.get_attribute("data-value") for c in choices] == [str(v) for v in range(1, 10)]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#sam-scale svg.manikin")) == 5
    assert (element("sam-low").text, element("sam-high").text) == ("unpleasant", "pleasant")
    screenshot(browser, tmp_path, "sam_valence")
    element("sam-7").click()
    wait_until(lambda: "excited" in element("sam-title").text, 30, "the arousal scale")
    screenshot(browser, tmp_path, "sam_arousal")
    ActionChains(browser).send_keys("3").perform()
    screen_becomes(browser, "done")
    assert element("message").text == "The session is over. Thank you!"

    tones = browser.execute_script("return window.bandmate.cues")
    assert [(t["cue"], t["state"]) for t in tones] == [("tone", "running")] * 2
    markers = session.finish()
    cues = [(m["cue"], m["block"]) for m in markers if m["kind"] == "cue"]
    assert cues == [
        ("instruction", "eyes_closed"), ("fixation", "eyes_closed"), ("tone", "eyes_closed"),
        ("instruction", "happy"), ("fixation", "happy"), ("tone", "happy"),
        ("sam_valence", "happy"), ("sam_arousal", "happy"),
    ]  # fmt: skip
    [rating] = [m for m in markers if m["kind"] == "rating"]
    assert (rating["valence"], rating["arousal"], rating["source"]) == (7, 3, "page")
    recorded = [m for m in read_session(session.folder).markers if m["kind"] == "rating"]
    assert [{k: v for k, v in m.items() if k != "lsl_time"} for m in recorded] == [rating]


def test_a_pause_shows_the_paused_screen_then_runs_the_block_again(
    session: Session, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(session.url)
    wait_until(lambda: browser.find_element(By.ID, "start").is_displayed(), 30, "Start")
    browser.find_element(By.ID, "start").click()
    wait_until(
        lambda: browser.execute_script("return window.bandmate.screen") == "block"
        and "happy" in browser.find_element(By.ID, "instruction").text,
        60, "the happy block",
    )  # fmt: skip
    # The page can show the block screen with the happy instruction a moment before the
    # session has started the block (the ready screen carries the same instruction): pause
    # only once the block's start is recorded.
    wait_until(
        lambda: any(m["kind"] == "block_start" and m.get("block") == "happy"
                    for m in read_session(session.folder).markers),
        30, "the happy block's start in the recording",
    )  # fmt: skip
    session.type("p")
    screen_becomes(browser, "paused")
    assert browser.find_element(By.ID, "message").text.startswith("Paused.")
    screenshot(browser, tmp_path, "paused")
    session.type("r")
    screen_becomes(browser, "rating", timeout_s=60)
    browser.find_element(By.ID, "sam-5").click()
    wait_until(lambda: "excited" in browser.find_element(By.ID, "sam-title").text, 30, "arousal")
    browser.find_element(By.ID, "sam-5").click()
    streamed = [m["kind"] for m in session.finish()]
    # The order is read from the recording, which loses nothing; the LSL copy must carry the
    # same markers, but a loopback inlet that breaks off and reconnects (liblsl logs
    # "Stream transmission broke off") can miss some, so it must only not add or reorder.
    markers = read_session(session.folder).markers
    recorded = iter([m["kind"] for m in markers])
    assert streamed and all(kind in recorded for kind in streamed)
    happy = [m["kind"] for m in markers if m.get("block") == "happy"]
    assert happy[happy.index("pause") - 2 :] == [
        "block_start", "cue", "pause", "resume", "cue", "block_start", "cue", "block_end",
        "cue", "cue", "cue", "rating",
    ]  # fmt: skip
