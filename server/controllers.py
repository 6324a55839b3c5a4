"""Control from outside the socket: MIDI CCs (python-rtmidi) and OSC messages (python-osc)
set session controls, validated exactly as a WebSocket `control` message is.

Both apply to every session, or with OSC to one: `/bandmate/<control> value` or
`/bandmate/<session id>/<control> value`; `/bandmate/reset` (or a mapped CC) resets.
`/bandmate/valence v` (from `bandmate bci run --server-osc`) only reports the listener's
valence in telemetry, and `/bandmate/instruction "text"` (from `bandmate session run`) the
experiment's current instruction, which the page shows. They run on their own threads;
SessionHost.command is safe from any thread.

OSC has no auth, so it listens on loopback unless --osc-host says otherwise (with a warning).
What a controller ignores is logged at most once per IGNORED_LOG_INTERVAL_S, with a count: a
flood of bad datagrams must not flood the log.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bci.live.library_output import library_output_caught
from bci.osc_addresses import OSC_PATTERN, OSC_ROOT
from server.config import is_loopback
from server.errors import ServerError
from server.host import SessionHost
from server.protocol import CONTROL_RANGES, STEER_PREFIX, SetControl, Steer

log = logging.getLogger("bandmate.server")
DEFAULT_MIDI_MAP = Path(__file__).resolve().parent.parent / "clients" / "midi_map.yaml"
IGNORED_LOG_INTERVAL_S = 5.0


class Controller(Protocol):
    def close(self) -> None: ...


class ThrottledLog:
    """Warnings, at most one per interval; the next one says how many were held back. One
    per controller, each called from that controller's one thread."""

    def __init__(self, interval_s: float = IGNORED_LOG_INTERVAL_S):
        self.interval_s = interval_s
        self._last = -float("inf")
        self._held = 0

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self._held += 1
            return
        held, self._held, self._last = self._held, 0, now
        if held:
            message += f" (and {held} more ignored in the {self.interval_s:g} s before)"
        log.warning(message)


def apply_control(
    host: SessionHost, name: str, value: Any, session: str | None = None
) -> str | None:
    """Validate and queue a control for one session or all; why it was ignored, if it was."""
    targets = host.all() if session is None else [s for s in host.all() if s.id == session]
    if name == "reset":
        for hosted in targets:
            host.command(hosted, "reset")
        return None
    if name == "instruction":  # from `bandmate session run --server-osc`: shown on the page
        host.instruction = str(value)[:500] if value else None
        return None
    if name == "valence":  # from a BCMI loop (`bandmate bci run --server-osc`): telemetry only
        if not isinstance(value, int | float) or not -1.0 <= value <= 1.0:
            return f"ignored valence {value!r:.40}: it is a number in [-1, 1]"
        for hosted in targets:
            hosted.valence = float(value)
        return None
    if name.startswith(STEER_PREFIX):
        return _steer(host, targets, name.removeprefix(STEER_PREFIX), value)
    try:
        control = SetControl(type="control", name=name, value=value)  # type: ignore[arg-type]
    except ValidationError as exc:
        return f"ignored control {name:.40}={value!r:.40}: {exc.errors()[0]['msg']}"
    if control.name in ("checkpoint", "anticipation"):
        return f"ignored control {name}: set it over the WebSocket"
    for hosted in targets:
        host.command(hosted, control.name, control.value)
    return None


def _steer(host: SessionHost, targets: list[Any], attribute: str, value: Any) -> str | None:
    """`steer.<attribute>` from OSC or a MIDI CC: glide the sessions that can steer it."""
    try:
        Steer(type="steer", alphas={attribute: value})
    except ValidationError as exc:
        return f"ignored steer {attribute:.40}={value!r:.40}: {exc.errors()[0]['msg']}"
    able = [h for h in targets if attribute in h.session.backend.info.steering]
    for hosted in able:
        host.command(hosted, "steer", {attribute: float(value)})
    if targets and not able:
        return f"ignored steer {attribute:.40}: no session's checkpoint steers it"
    return None


class CcMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cc: int = Field(ge=0, le=127)
    control: str
    min: float = 0.0
    max: float = 1.0
    channel: int | None = Field(default=None, ge=1, le=16)
    trigger: bool = False


class MidiMap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mappings: list[CcMapping]


def load_midi_map(path: Path | None) -> MidiMap:
    path = path or DEFAULT_MIDI_MAP
    try:
        midi_map = MidiMap.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ServerError(f"cannot read MIDI map {path}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ServerError(f"MIDI map {path}: {where}: {first['msg']}") from None
    for mapping in midi_map.mappings:
        steers = mapping.control.startswith(STEER_PREFIX) and not mapping.trigger
        if not steers and (mapping.control not in (*CONTROL_RANGES, "reset")
                           or mapping.control in ("seed", "anticipation")):  # fmt: skip
            raise ServerError(f"MIDI map {path}: cc {mapping.cc}: cannot map {mapping.control!r}")
    return midi_map


class MidiController:
    """A virtual MIDI input; on Linux through JACK (where there is no ALSA sequencer)."""

    def __init__(self, host: SessionHost, port_name: str, midi_map: MidiMap, api: str = "jack"):
        import rtmidi

        from bci.live.midi_out import RTMIDI_APIS  # here, as rtmidi is: only a MIDI input needs it

        self.host, self.map = host, midi_map
        self.changes = 0
        self.ignored = ThrottledLog()
        try:
            with library_output_caught():  # libjack's and ALSA's complaints: ours is one line
                self.midi_in = rtmidi.MidiIn(RTMIDI_APIS[api], name="bandmate")
                self.midi_in.open_virtual_port(port_name)
        except (rtmidi.SystemError, rtmidi.InvalidPortError) as exc:
            fix = "; start jackd first" if api == "jack" else ""
            raise ServerError(f"cannot open MIDI input {port_name!r} ({api}): {exc}{fix}") from None
        self.midi_in.set_callback(self._on_message)

    def _on_message(self, event: tuple[list[int], float], _: object = None) -> None:
        message = event[0]
        if len(message) != 3 or message[0] & 0xF0 != 0xB0:
            return  # not a control change
        channel, cc, value = (message[0] & 0x0F) + 1, message[1], message[2]
        for mapping in self.map.mappings:
            if mapping.cc != cc or mapping.channel not in (None, channel):
                continue
            if mapping.trigger:
                ignored = apply_control(self.host, mapping.control, None) if value >= 64 else None
            else:
                scaled = mapping.min + (mapping.max - mapping.min) * value / 127
                ignored = apply_control(self.host, mapping.control, scaled)
            if ignored:
                self.ignored.warning(ignored)
            self.changes += 1

    def close(self) -> None:
        self.midi_in.close_port()
        self.midi_in.delete()


class OscController:
    def __init__(self, host: SessionHost, port: int, address: str = "127.0.0.1"):
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer

        self.host = host
        self.ignored = ThrottledLog()
        dispatcher = Dispatcher()
        dispatcher.map(OSC_PATTERN, self._on_message)
        try:
            # One thread for every datagram: a thread each would let a flood spawn thousands.
            self.server = BlockingOSCUDPServer((address, port), dispatcher)
        except OSError as exc:
            raise ServerError(
                f"cannot listen for OSC on UDP {address}:{port}: {exc.strerror}"
            ) from None
        if not is_loopback(address):
            log.warning(
                "OSC on UDP %s:%d is reachable from the network and has no auth: anyone there "
                "can set every session's controls (--osc-host 127.0.0.1 keeps it local)",
                address, port,
            )  # fmt: skip
        self.thread = threading.Thread(target=self.server.serve_forever, name="bandmate-osc",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def _on_message(self, address: str, *args: Any) -> None:
        parts = address.strip("/").split("/")[1:]  # drop the root, OSC_ROOT
        if len(parts) >= 2 and parts[-2] == "steer":  # .../steer/<attribute> alpha
            parts = [*parts[:-2], STEER_PREFIX + parts[-1]]
        if len(parts) not in (1, 2) or (parts[-1] != "reset" and len(args) != 1):
            expected = f"expected {OSC_ROOT}/[session/]control value"
            self.ignored.warning(f"ignored OSC {address:.80} {args!r:.80}: {expected}")
            return
        session = parts[0] if len(parts) == 2 else None
        ignored = apply_control(self.host, parts[-1], args[0] if args else None, session)
        if ignored:
            self.ignored.warning(ignored)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_controllers(
    host: SessionHost, midi_in: str | None, midi_map: Path | None, osc_port: int | None,
    osc_address: str = "127.0.0.1",
) -> list[Controller]:  # fmt: skip
    controllers: list[Controller] = []
    if midi_in is not None:
        controllers.append(MidiController(host, midi_in, load_midi_map(midi_map)))
    if osc_port is not None:
        controllers.append(OscController(host, osc_port, osc_address))
    return controllers
