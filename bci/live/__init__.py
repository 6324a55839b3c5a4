"""The live room: EEG in over LSL, music out over MIDI, in real time.

lsl_input (with eeg_ring and sample_grid) -> signal_quality (the gate) -> faa (valence) ->
mapping -> composer -> midi_out or synth; loop wires them together, bci_session adds the
outputs of `bandmate bci run`. simulate is the headset that stands in for a real one.
Imports nothing from bci.experiment or bci.analysis.
"""
