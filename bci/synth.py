"""The no-DAW default: the loop's MIDI played by FluidSynth on the General MIDI SoundFont.

FluidSynth's own audio driver plays it (JACK by default here; "pulseaudio", "alsa" or
"coreaudio" elsewhere). Parts get GM programs that suit them: piano chords, fingered bass,
flute melody, and the GM drum kit on channel 10.
"""

from __future__ import annotations

from pathlib import Path

from bci.errors import BciError

GM_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian fluid-soundfont-gm
PART_PROGRAMS = {0: 0, 1: 33, 2: 73}  # channel -> GM program: piano, fingered bass, flute
DRUM_CHANNEL = 9


class FluidSynthSink:
    def __init__(self, driver: str = "jack", soundfont: Path = GM_SOUNDFONT,
                 client_name: str = "bandmate-synth"):  # fmt: skip
        import fluidsynth

        if not soundfont.is_file():
            raise BciError(f"SoundFont {soundfont} is missing: install Debian fluid-soundfont-gm")
        settings = {"audio.jack.id": client_name} if driver == "jack" else {}
        self.synth = fluidsynth.Synth(gain=0.5, samplerate=48_000.0, **settings)
        try:
            self.synth.start(driver=driver)
        except Exception as exc:  # pyfluidsynth raises bare Exceptions for driver failures
            self.synth.delete()
            raise BciError(f"cannot start FluidSynth's {driver} audio driver: {exc}") from None
        if self.synth.audio_driver is None:
            self.synth.delete()
            raise BciError(f"cannot start FluidSynth's {driver} audio driver (is it running?)")
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
