"""The subcommands of ``ofabench``: each module defines ``register(subparsers)``."""
