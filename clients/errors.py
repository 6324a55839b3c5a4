class ClientError(Exception):
    """One line for the user: a refused connection, a close code, a server error message."""
