"""`python -m server.cli`, as torchrun runs it."""

from server.cli import main

if __name__ == "__main__":
    main()
