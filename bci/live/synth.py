"""The no-DAW default: the loop's MIDI played by FluidSynth on the General MIDI SoundFont.

FluidSynth's own audio driver plays it (JACK by default here; "pulseaudio", "alsa" or
"coreaudio" elsewhere). Parts get GM programs that suit them: piano chords, fingered bass,
flute melody, and the GM drum kit on channel 10.
"""

from __future__ import annotations

from pathlib import Path

from bci.errors import BciError
from bci.live.library_output import library_output_caught

GM_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian fluid-soundfont-gm
PART_PROGRAMS = {0: 0, 1: 33, 2: 73}  # channel -> GM program: piano, fingered bass, flute
DRUM_CHANNEL = 9


# When a driver cannot start, what to try instead (a laptop without JACK has PulseAudio).
OTHER_DRIVERS = {
    "jack": "start jackd, or use --synth-driver pulseaudio or alsa",
    "pulseaudio": "use --synth-driver alsa or jack",
    "alsa": "use --synth-driver pulseaudio or jack",
}


class FluidSynthSink:
    def __init__(self, driver: str = "jack", soundfont: Path = GM_SOUNDFONT,
                 client_name: str = "bandmate-synth"):  # fmt: skip
        import fluidsynth

        if not soundfont.is_file():
            raise BciError(f"SoundFont {soundfont} is missing: install Debian fluid-soundfont-gm")
        settings = {"audio.jack.id": client_name} if driver == "jack" else {}
        with library_output_caught() as said:
            self.synth = fluidsynth.Synth(gain=0.5, samplerate=48_000.0, **settings)
            # Only the audio driver: Synth.start() would also open a MIDI driver (the ALSA
            # sequencer, which fails and complains where there is none), and we send the
            # notes ourselves.
            self.synth.setting("audio.driver", driver)
            self.synth.audio_driver = fluidsynth.new_fluid_audio_driver(
                self.synth.settings, self.synth.synth
            )
        if not self.synth.audio_driver:
            self.synth.delete()
            reason = (said.last_line("fluidsynth: error:") or "is it running?").rstrip(".")
            fix = OTHER_DRIVERS.get(driver, "use --synth-driver jack, pulseaudio or alsa")
            raise BciError(f"cannot start FluidSynth's {driver} audio driver ({reason}): {fix}")
        font = self.synth.sfload(str(soundfont))
        for channel, program in PART_PROGRAMS.items():
            self.synth.program_select(channel, font, 0, program)
        self.synth.program_select(DRUM_CHANNEL, font, 128, 0)

    def send(self, message: list[int]) -> None:
        kind, channel = message[0] & 0xF0, message[0] & 0x0F
        if kind == 0x90 and message[2] > 0:
            self.synth.noteon(channel, message[1], message[2])
        elif kind in (0x80, 0x90):
            self.synth.noteoff(channel, message[1])
        elif kind == 0xB0:
            self.synth.cc(channel, message[1], message[2])

    def close(self) -> None:
        self.synth.delete()
