"""The server's user-facing error: one line, printed without a traceback by the CLI."""


class ServerError(Exception):
    pass
