"""The one error a user sees as a line: bad input, named with what is allowed (the command
line tools print it and exit 2). Subclasses say where it came from."""


class ConfigError(ValueError):
    """A problem with what the user gave (a config, a file, a flag, a storage); the message is
    one line meant for the user."""


class UsageError(ConfigError):
    """A command-line input that is wrong before any config is read (a missing file, flags that
    do not go together)."""
