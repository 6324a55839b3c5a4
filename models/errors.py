"""The one base for errors a user can act on. The CLI prints these as a single line."""


class ModelsError(Exception):
    """Bad input to the model side: data, SoundFonts, checkpoints, configs."""
