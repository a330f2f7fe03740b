"""The API keys the churn service accepts (``auth:`` in configs/serving.yaml).

The service reads them from one environment variable, ``auth.key_env`` (``CHURNOPS_API_KEY``):
one key, or several separated by commas while a key is rotated. No key (unset or blank) means
the API is open. ``churnops.platform.api_key`` fills the variable from a ZenML secret when the CLI starts
the service. Nothing here ever puts a key in a message: errors name the source and the position.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from churnops.serving.config import AuthOptions

MIN_KEY_LENGTH = 16
KEY_HINT = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"


class ApiKeyError(ValueError):
    """A configured API key that cannot be used; the message names where it came from, never the key."""


def parse_api_keys(raw: str | None, source: str) -> tuple[str, ...]:
    """The keys in ``raw`` (comma-separated), checked; empty when ``raw`` is unset or blank.

    A key must be at least :data:`MIN_KEY_LENGTH` printable ASCII characters without spaces
    (anything else cannot travel in an HTTP header unchanged).
    """
    if raw is None or not raw.strip():
        return ()
    keys = [part.strip() for part in raw.split(",")]
    for position, key in enumerate(keys, 1):
        where = f"{source}: key {position} of {len(keys)}"
        if not key:
            raise ApiKeyError(f"{where} is empty: separate keys with single commas, without a trailing comma")
        if len(key) < MIN_KEY_LENGTH:
            raise ApiKeyError(f"{where} is shorter than {MIN_KEY_LENGTH} characters; {KEY_HINT}")
        if not all(33 <= ord(character) <= 126 for character in key):
            raise ApiKeyError(f"{where} has a character other than printable ASCII (no spaces, no accents); "
                              f"{KEY_HINT}")
    return tuple(dict.fromkeys(keys))


def configured_api_keys(options: AuthOptions, environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The keys the service accepts, from the environment variable ``options.key_env``."""
    return parse_api_keys(environ.get(options.key_env), f"environment variable {options.key_env}")
