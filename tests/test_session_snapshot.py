"""engine.Session's snapshot and restore: a forked session continues bit-identically, on both
backends, and the named generator state batches like the positional one did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.backends import Backend, ModelState, create_backend
from engine.checkpoint import load_engine_checkpoint
from engine.errors import EngineError
from engine.session import Session, SessionConfig, SessionSnapshot

# Blocks that do not divide the hop, so a snapshot falls mid-hop with queued input and a
# partly read output FIFO: every piece of state is exercised.
BLOCK = 333
HALFWAY = 12_000  # samples, not a multiple of BLOCK or of the hop


@pytest.fixture(scope="module")
def recording(live_recording: np.ndarray) -> np.ndarray:
    return live_recording[: 2 * 48_000]


def feed(session: Session, audio: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [session.process(audio[i : i + BLOCK]) for i in range(0, len(audio), BLOCK)]
    )


def forked(session: Session) -> Session:
    twin = Session(session.backend, SessionConfig(seed=12345))  # restore brings the seed
    twin.restore(session.snapshot())
    return twin


@pytest.mark.parametrize("backend_name", ["onnx", "torch"])
def test_a_restored_session_continues_bit_identically_to_the_original(
    tiny_checkpoint: Path, recording: np.ndarray, backend_name: str
) -> None:
    backend = create_backend(load_engine_checkpoint(tiny_checkpoint), backend_name)
    original = Session(backend, SessionConfig(seed=3))
    original.controls.gain = 0.5  # mid-ramp at the snapshot: the ramp's position is state
    half = len(recording) // 2 + 100
    feed(original, recording[:half])
    twin = forked(original)
    rest = recording[half:]
    expected = feed(original, rest)
    assert np.abs(expected).max() > 0, "the accompaniment is silent: nothing is compared"
    np.testing.assert_array_equal(feed(twin, rest), expected)


def midway(backend: Backend, recording: np.ndarray) -> tuple[Session, SessionSnapshot]:
    """A session a quarter of a second into the recording, and its snapshot there."""
    session = Session(backend, SessionConfig(seed=5))
    feed(session, recording[:HALFWAY])
    return session, session.snapshot()


def test_restoring_a_snapshot_rewinds_the_session_it_was_taken_from(
    onnx_backend: Backend, recording: np.ndarray
) -> None:
    session, snapshot = midway(onnx_backend, recording)
    first = feed(session, recording[HALFWAY:])
    session.restore(snapshot)
    np.testing.assert_array_equal(feed(session, recording[HALFWAY:]), first)


def test_a_snapshot_is_independent_of_the_session_that_goes_on(
    onnx_backend: Backend, recording: np.ndarray
) -> None:
    session, snapshot = midway(onnx_backend, recording)
    expected = feed(forked(session), recording[HALFWAY:])
    feed(session, recording[HALFWAY:])  # the original moves on; the snapshot must not
    twin = Session(onnx_backend)
    twin.restore(snapshot)
    np.testing.assert_array_equal(feed(twin, recording[HALFWAY:]), expected)


def test_a_resampling_session_refuses_a_snapshot_in_one_line(onnx_backend: Backend) -> None:
    with pytest.raises(EngineError, match="resamples") as caught:
        Session(onnx_backend, SessionConfig(device_rate=44_100)).snapshot()
    assert "\n" not in str(caught.value)


def test_named_generator_state_survives_batching_and_splitting(onnx_backend: Backend) -> None:
    states = [onnx_backend.initial_state(1) for _ in range(3)]
    rng = np.random.default_rng(0)
    for state in states:
        assert state.generator is not None
        state.generator.keys[:] = rng.standard_normal(state.generator.keys.shape)
    for state, back in zip(states, ModelState.concat(states).split(), strict=True):
        assert state.generator is not None and back.generator is not None
        np.testing.assert_array_equal(back.generator.keys, state.generator.keys)
        np.testing.assert_array_equal(back.generator.position, state.generator.position)
