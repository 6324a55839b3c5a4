"""The server's user-facing errors: one line each, printed without a traceback by the CLI."""


class ServerError(Exception):
    pass


class TooManySessions(ServerError):
    """The server holds --max-sessions already."""


class UnknownSession(ServerError):
    pass


class SessionBusy(ServerError):
    """Another stream already drives the session."""
