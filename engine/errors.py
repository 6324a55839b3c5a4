"""The one base for engine errors a user can act on. The CLI prints these as a single line."""


class EngineError(Exception):
    """Bad device, sample rate, file, checkpoint or message on the real-time side."""
