"""`bandmate bci run`: the loop, the music player, the LSL outlets and the log, wired together.

Outputs, all on LSL's clock so one recorder (e.g. LabRecorder) captures everything:
- MIDI on a virtual port (or silently, logged only, without --midi-port);
- LSL outlets "BandmateValence" (valence, faa, arousal per window), "BandmateMusic" (the
  musical parameters per window) and "BandmateNotes" (a marker per note-on);
- the JSON-lines log: the config, every window, every input event, every MIDI message.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pylsl

from bci.errors import BciError, write_failure
from bci.live.composer import Composer
from bci.live.harmony import make_harmony
from bci.live.loop import BciLoop, BciRunConfig, JsonlLog, RunSummary, WindowResult
from bci.live.mapping import MODES, MusicParams
from bci.live.midi_out import MidiScheduler, MidiSink, MusicPlayer, RtMidiSink, SentMessage
from bci.live.valence_steering import ValenceSteering
from bci.osc_addresses import OSC_INSTRUCTION, OSC_VALENCE, osc_steer_address


class SilentSink:
    """No MIDI port: messages are only counted and logged."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, message: list[int]) -> None:
        self.sent += 1

    def close(self) -> None:
        pass


class BciOutlets:
    def __init__(self, source_id: str = "bandmate-bci"):
        def outlet(name: str, kind: str, labels: list[str], fmt: str) -> pylsl.StreamOutlet:
            info = pylsl.StreamInfo(
                name, kind, len(labels), pylsl.IRREGULAR_RATE, fmt, f"{source_id}-{kind}"
            )
            channels = info.desc().append_child("channels")
            for label in labels:
                channels.append_child("channel").append_child_value("label", label)
            return pylsl.StreamOutlet(info)

        self.valence = outlet(
            "BandmateValence", "Valence", ["valence", "faa", "arousal"], "float32"
        )
        self.music = outlet(
            "BandmateMusic",
            "MusicParams",
            ["mode_index", "tempo_bpm", "density", "register", "velocity"],
            "float32",
        )
        self.notes = outlet("BandmateNotes", "Markers", ["note"], "string")

    def window(self, result: WindowResult) -> None:
        faa = result.features.faa if result.features else float("nan")
        arousal = result.arousal if result.arousal is not None else float("nan")
        self.valence.push_sample([result.valence, faa, arousal], result.lsl_time)
        if result.params is not None:
            p = result.params
            values = [MODES.index(p.mode), p.tempo_bpm, p.density, p.register, p.velocity]
            self.music.push_sample([float(v) for v in values], result.lsl_time)

    def note(self, sent: SentMessage) -> None:
        status = sent.message[0]
        if status & 0xF0 == 0x90 and len(sent.message) == 3 and sent.message[2] > 0:
            channel, pitch, velocity = (status & 0x0F) + 1, sent.message[1], sent.message[2]
            self.notes.push_sample(
                [f"note_on ch={channel} pitch={pitch} vel={velocity}"], sent.sent
            )


@dataclass(frozen=True)
class BciOutputs:
    midi_port: str | None = None
    midi_api: str = "jack"
    midi_clock: bool = False
    log_path: Path | None = None
    outlets: bool = True
    server_osc: str | None = None  # "HOST:PORT" of a `bandmate serve --osc-port`
    synth_driver: str | None = None  # without a MIDI port: FluidSynth on this audio driver
    steering: ValenceSteering = field(default_factory=ValenceSteering)  # valence -> alphas


class ServerControl:
    """Drives a running accompaniment server through its OSC control interface, the same one
    a MIDI controller or Max patch uses: every window sends the valence (shown in the
    server's telemetry) and steers the band by it (bci/live/valence_steering.py: by default
    a brighter mood gives a brighter, higher band and a darker one a darker, lower band)."""

    def __init__(self, address: str, steering: ValenceSteering | None = None):
        self.steering = steering or ValenceSteering()
        from pythonosc.udp_client import SimpleUDPClient

        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise BciError(f"--server-osc wants HOST:PORT, not {address!r}")
        self.client = SimpleUDPClient(host, int(port))

    def instruction(self, text: str) -> None:
        """Shown on the server's page ("" clears it)."""
        self.client.send_message(OSC_INSTRUCTION, text)

    def window(self, result: WindowResult) -> dict[str, float] | None:
        """Send this window's valence and steering; the alphas sent (None before the music)."""
        if result.params is None:
            return None
        self.client.send_message(OSC_VALENCE, result.valence)
        alphas = self.steering.alphas(result.valence)
        for name, alpha in alphas.items():
            self.client.send_message(osc_steer_address(name), alpha)
        return alphas


def make_sink(outputs: BciOutputs) -> MidiSink:
    if outputs.midi_port:
        return RtMidiSink(outputs.midi_port, outputs.midi_api)
    if outputs.synth_driver:
        from bci.live.synth import FluidSynthSink

        return FluidSynthSink(outputs.synth_driver)
    return SilentSink()


class BciSession:
    """Start, run until stopped or duration_s, stop: the whole `bci run`."""

    def __init__(
        self,
        config: BciRunConfig,
        outputs: BciOutputs,
        on_window: Callable[[WindowResult], None] | None = None,
        wrap_sink: Callable[[MidiSink], MidiSink] | None = None,
    ):
        self.log = JsonlLog(outputs.log_path)
        self.log.write({"type": "config", "lsl_clock": pylsl.local_clock(), **config.as_dict()})
        # The stream first: a missing stream or channel is the error to report, not the synth.
        self.loop = BciLoop(config, self.log, self._window)
        self.sink = make_sink(outputs)
        if wrap_sink is not None:  # e.g. the session runner's per-block music gate
            self.sink = wrap_sink(self.sink)
        # Set by the session runner for sham blocks: music from another source than this EEG.
        self.params_override: Callable[[], MusicParams] | None = None
        self.outlets = BciOutlets() if outputs.outlets else None
        self.server = None
        if outputs.server_osc:
            self.server = ServerControl(outputs.server_osc, outputs.steering)
            self.log.write({"type": "steer_map", "lsl_clock": pylsl.local_clock(),
                            "gains": outputs.steering.gains})  # fmt: skip
        self.on_window = on_window
        self.scheduler = MidiScheduler(
            self.sink, clock=pylsl.local_clock, midi_clock=outputs.midi_clock, on_sent=self._sent
        )
        self.player = MusicPlayer(
            Composer(config.seed, config.mapping.tonic, harmony=make_harmony(config.harmony)),
            self.scheduler,
            self._params,
            clock=pylsl.local_clock,
        )
        self.midi_messages = 0
        self._lock = threading.Lock()

    def _params(self) -> MusicParams:
        if self.params_override is not None:
            return self.params_override()
        params = self.loop.processor.params
        assert params is not None, "the player starts only after the baseline"
        return params

    def _window(self, result: WindowResult) -> None:
        if result.params is not None and self.player.thread is None:
            self.player.start()  # the baseline is over: music from the next bar
        if self.outlets is not None:
            self.outlets.window(result)
        if self.server is not None:
            alphas = self.server.window(result)
            if alphas is not None:  # on the LSL clock, beside the window that set it
                self.log.write({"type": "steer", "lsl_clock": result.lsl_time,
                                "sent": pylsl.local_clock(), "valence": result.valence,
                                "alphas": alphas})  # fmt: skip
        if self.on_window is not None:
            self.on_window(result)

    def _sent(self, sent: SentMessage) -> None:
        with self._lock:
            self.midi_messages += 1
        self.log.write(
            {"type": "midi", "due": sent.due, "sent": sent.sent, "message": list(sent.message)}
        )
        if self.outlets is not None:
            self.outlets.note(sent)

    def run(self) -> RunSummary:
        try:
            summary = self.loop.run()
        except Exception as error:
            # Whoever reports it gives one line; the log keeps the traceback for the developer.
            self.log.write({"type": "error", "lsl_clock": pylsl.local_clock(),
                            "error": f"{type(error).__name__}: {error}",
                            "traceback": traceback.format_exc()})  # fmt: skip
            raise
        finally:
            self.player.stop()
            self.sink.close()
            self.log.close()
        if self.log.failure is not None and self.log.path is not None:
            raise BciError(write_failure("the log", self.log.path, self.log.failure))
        summary.midi_messages = self.midi_messages
        return summary

    def stop(self) -> None:
        self.loop.stop()
