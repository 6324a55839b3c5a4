"""Fuzzing the server: hypothesis writes WebSocket openings, control messages and PCM frames,
and schemathesis writes REST requests from the server's own OpenAPI spec, all against a real
`bandmate serve`. Whatever comes in, the answer is a documented error or close code (never
an internal error), and a bystander session streams on, bit for bit as file mode. Besides
arbitrary JSON, the messages include numbers too long to convert, nesting too deep to parse
and values of the wrong type; floods of tiny messages are fuzzed on their own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from schemathesis import GenerationMode
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from engine.backends import Backend
from engine.filemode import accompany
from server.protocol import CONTROL_NAMES, CloseCode, ErrorMessage
from tests.helpers import RunningServer

# Slow, so not in `make test-quick`: every test here runs real processes (`bandmate serve`, `session
# run`, `bench soak`).
pytestmark = pytest.mark.slow

# derandomize=True below: CI draws the same examples on every run, so a red run is a real
# regression, reproducible by rerunning; raise these counts locally to explore further.
SOCKET_EXAMPLES = 150
FLOOD_EXAMPLES = 12
REST_EXAMPLES = 60  # per operation
MAX_MESSAGE_BYTES = 65_536
MAX_MESSAGES_PER_S = 500  # low, so a flood that earns 4420 stays short
ERROR_CODES = set(ErrorMessage.model_fields["code"].annotation.__args__)  # type: ignore[union-attr]
# Refusals a client can earn with its `open`; every one is documented in docs/protocol.md.
OPEN_REFUSALS = {
    CloseCode.BAD_OPEN,
    CloseCode.UNAUTHORIZED,
    CloseCode.UNKNOWN_SESSION,
    CloseCode.VERSION,
    CloseCode.SESSION_BUSY,
    CloseCode.TOO_MANY_SESSIONS,
}


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path) -> Iterator[RunningServer]:
    running = RunningServer(tiny_models_dir, "--max-message-bytes", str(MAX_MESSAGE_BYTES),
                            "--max-messages-per-s", str(MAX_MESSAGES_PER_S))  # fmt: skip
    yield running
    running.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6,
)  # fmt: skip
openings = st.fixed_dictionaries(
    {"type": st.just("open")},
    optional={
        "protocol": st.sampled_from([1, 2]) | json_values,
        "checkpoint": st.sampled_from(["default", "../default", "/etc"]) | json_values,
        "seed": st.integers(-5, 2**33) | json_values,
        "sample_rate": st.sampled_from([44_100, 48_000, 12_345, 0, "48000", 48_000.0, True])
        | json_values,
        "channels": st.integers(-1, 40) | st.sampled_from(["2", True, 1.0]),
        "format": st.sampled_from(["float32", "int16", "mp3"]),
        "input_channel": st.integers(-1, 3) | st.none(),
        "session": st.text(max_size=12),
        "extra": json_values,
    },
)
controls = st.fixed_dictionaries(
    {"type": st.sampled_from(["control", "reset", "ping", "open"]) | st.text(max_size=6)},
    optional={"name": st.sampled_from(CONTROL_NAMES) | st.text(max_size=8),
              "value": json_values, "extra": json_values},
)  # fmt: skip
# Raw JSON text: json.dumps itself refuses integers of over 4300 digits.
huge_numbers = st.builds(
    lambda name, digits: f'{{"type": "control", "name": "{name}", "value": {"9" * digits}}}',
    st.sampled_from(CONTROL_NAMES), st.integers(300, 20_000),
)  # fmt: skip
deep_nesting = st.builds(
    lambda depth, inside: inside.replace("V", "[" * depth + "]" * depth),
    st.integers(100, 30_000),
    st.sampled_from(["V", '{"type": "control", "name": "gain", "value": V}', '{"type": V}']),
)
texts = (
    controls.map(json.dumps) | json_values.map(json.dumps) | st.text(max_size=64)
    | huge_numbers | deep_nesting
)  # fmt: skip
pcm = arrays(np.float32, st.integers(1, 2048)).map(lambda a: a.tobytes())
binaries = pcm | st.binary(max_size=4096) | st.just(b"\x00" * (MAX_MESSAGE_BYTES + 4))
messages = st.lists(texts | binaries, min_size=1, max_size=6)


class Bystander:
    """One well-behaved session that streams a block after every fuzzed example."""

    def __init__(self, socket: ClientConnection, audio: np.ndarray, seed: int):
        self.socket, self.audio, self.sent = socket, audio, 0
        self.socket.send(json.dumps({"type": "open", "seed": seed}))
        self.ready = json.loads(self.socket.recv(timeout=10))
        self.received: list[np.ndarray] = []

    def step(self, blocksize: int = 1024) -> None:
        self.socket.send(self.audio[self.sent : self.sent + blocksize].tobytes())
        self.sent += blocksize
        while sum(len(r) for r in self.received) < self.sent:
            message = self.socket.recv(timeout=10)
            if isinstance(message, bytes):
                self.received.append(np.frombuffer(message, np.float32))
            else:
                assert json.loads(message)["type"] == "telemetry", message


def fuzz_once(server: RunningServer, opening: dict[str, Any], sent: list[str | bytes]) -> None:
    """Open with `opening`, send `sent`, then ping: the server must answer with documented
    codes only, and still answer the ping unless it closed the socket as documented."""
    with connect(f"{server.ws_url}/v1/stream", max_size=None) as socket:
        socket.send(json.dumps(opening))
        try:
            first = json.loads(socket.recv(timeout=10))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code in OPEN_REFUSALS, closed
            return
        assert first["type"] == "ready", first
        too_big = False
        try:
            for message in sent:
                too_big = len(message) > MAX_MESSAGE_BYTES
                socket.send(message)
                if too_big:
                    break
            socket.send(json.dumps({"type": "ping"}))
            while True:
                reply = socket.recv(timeout=10)
                if isinstance(reply, str):
                    parsed = json.loads(reply)
                    if parsed["type"] == "error":
                        assert parsed["code"] in ERROR_CODES, parsed
                    if parsed["type"] == "pong":
                        break
        except ConnectionClosed as closed:
            assert too_big, f"closed by a message under the size limit: {closed}"
            assert closed.rcvd is not None and closed.rcvd.code == CloseCode.MESSAGE_TOO_BIG


def test_fuzzed_socket_messages_get_documented_answers_while_a_bystander_streams_on(
    server: RunningServer, onnx_backend: Backend, live_recording: np.ndarray
) -> None:
    with connect(f"{server.ws_url}/v1/stream", max_size=None) as socket:
        bystander = Bystander(socket, np.resize(live_recording, 60 * 48_000), seed=8)
        fuzz_clients_beside(server, bystander)
    audio = bystander.audio[: bystander.sent]
    expected = accompany(audio, 48_000, onnx_backend, seed=8).accompaniment
    latency = int(bystander.ready["latency_samples"])
    streamed = np.concatenate(bystander.received)[latency:]
    np.testing.assert_array_equal(streamed, expected[: len(streamed)])
    assert server.sessions_after_cleanup() == []  # every fuzzed one went, and the bystander


def fuzz_clients_beside(server: RunningServer, bystander: Bystander) -> None:
    """Hypothesis's clients, one at a time; the bystander streams a block after each."""

    @settings(max_examples=SOCKET_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(opening=openings | st.just({"type": "open"}), sent=messages)
    def one_client(opening: dict[str, Any], sent: list[str | bytes]) -> None:
        fuzz_once(server, opening, sent)
        bystander.step()
        assert server.alive()
        clients.append(len(sent))

    clients: list[int] = []
    one_client()
    assert len(clients) >= SOCKET_EXAMPLES
    print(f"{len(clients)} fuzzed clients sent {sum(clients)} messages")  # shown with -s


tiny_messages = st.sampled_from([
    np.zeros(1, np.float32).tobytes(), b"\x00", json.dumps({"type": "ping"}),
    json.dumps({"type": "control", "name": "gain", "value": 1.0}), "{",
])  # fmt: skip
floods = st.lists(st.tuples(tiny_messages, st.integers(1, 400)), min_size=1, max_size=6)


def test_fuzzed_floods_of_tiny_messages_are_answered_or_closed_4420(
    server: RunningServer,
) -> None:
    """Runs of tiny messages, sent as fast as the socket takes them: within the burst (a
    second's worth of --max-messages-per-s) every one is answered; beyond it, the socket may
    be closed, and then only with 4420."""

    @settings(max_examples=FLOOD_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(runs=floods)
    def one_flood(runs: list[tuple[str | bytes, int]]) -> None:
        sent = [message for message, count in runs for _ in range(count)]
        sent.append(json.dumps({"type": "ping"}))
        # max_queue=None: the client reads on while it sends, so it sees a close at once.
        with connect(f"{server.ws_url}/v1/stream", max_size=None, max_queue=None) as socket:
            socket.send(json.dumps({"type": "open"}))
            assert json.loads(socket.recv(timeout=10))["type"] == "ready"
            try:
                for message in sent:
                    socket.send(message)
                while not (isinstance(reply := socket.recv(timeout=30), str)
                           and json.loads(reply)["type"] == "pong"):  # fmt: skip
                    if isinstance(reply, str) and json.loads(reply)["type"] == "error":
                        assert json.loads(reply)["code"] in ERROR_CODES, reply
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == CloseCode.TOO_MANY_MESSAGES
                assert len(sent) > MAX_MESSAGES_PER_S, f"closed after {len(sent)} messages"
        assert server.alive()
        totals.append(len(sent))

    totals: list[int] = []
    one_flood()
    assert max(totals) > MAX_MESSAGES_PER_S  # some of them did flood
    print(f"{len(totals)} fuzzed floods of {min(totals)} to {max(totals)} messages")


def test_fuzzed_rest_requests_never_meet_a_server_error(server: RunningServer) -> None:
    """Every operation in /openapi.json, with bodies, paths and queries the spec allows
    (positive) and ones it does not (negative). schemathesis' own pytest loader does not
    run under pytest 9, so its strategies run under hypothesis here."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.result import Ok

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"an operation the spec does not describe well: {result}"
        operations.append(result.ok())
    assert {op.path for op in operations} >= {"/v1/sessions", "/v1/sessions/{session_id}"}
    requests: list[str] = []
    for operation in operations:

        @settings(max_examples=REST_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode)))
        def one_request(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error])
            requests.append(case.operation.label)

        one_request()
        assert server.alive()
        for session in httpx.get(f"{server.url}/v1/sessions").json():  # keep it below full
            httpx.delete(f"{server.url}/v1/sessions/{session['id']}")
    assert {op.label for op in operations} == set(requests)  # each one was tried
    print(f"{len(requests)} fuzzed requests over {len(operations)} operations")  # shown with -s
