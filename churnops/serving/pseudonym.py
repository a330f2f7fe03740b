"""Customer ids are pseudonymised before anything is written: SHA-256 of salt + id.

The salt is a secret of the deployment, not of the code: it comes from an environment
variable (``CHURNOPS_CUSTOMER_SALT`` by default) or from a file under the state folder that
is created with random bytes the first time. Feedback ingestion must hash ids with the same
salt so outcomes join to predictions: use :func:`customer_key_function`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterable

from churnops.settings import StatePaths


def load_salt(paths: StatePaths, salt_env: str = "CHURNOPS_CUSTOMER_SALT",
              salt_file: str = "secrets/customer_salt") -> bytes:
    """The salt from ``$salt_env``, else from ``$CHURNOPS_HOME/<salt_file>`` (created once)."""
    from_env = os.environ.get(salt_env)
    if from_env:
        return from_env.encode()
    path = paths.home / salt_file
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        candidate = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            # link() fails if another process created the salt first: then theirs wins.
            os.link(candidate, path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink(missing_ok=True)
    salt = path.read_text().strip()
    if not salt:
        raise ValueError(f"the customer-id salt file {path} is empty")
    return salt.encode()


def customer_key(customer_id: str, salt: bytes) -> str:
    """The pseudonym of ``customer_id``: hex SHA-256 of ``salt`` followed by the UTF-8 id."""
    return hashlib.sha256(salt + customer_id.encode()).hexdigest()


class CustomerKeyHasher:
    """:func:`customer_key` for many ids: the salted state is computed once and copied."""

    def __init__(self, salt: bytes) -> None:
        self._salted = hashlib.sha256(salt)

    def __call__(self, customer_id: str) -> str:
        digest = self._salted.copy()
        digest.update(customer_id.encode())
        return digest.hexdigest()

    def many(self, groups: Iterable[Iterable[str | None]]) -> list[str | None]:
        """Keys of every id in ``groups`` (lists of ids, e.g. one per request), in order."""
        copy = self._salted.copy
        keys: list[str | None] = []
        append = keys.append
        for customer_ids in groups:
            for customer_id in customer_ids:
                if customer_id is None:
                    append(None)
                    continue
                digest = copy()
                digest.update(customer_id.encode())
                append(digest.hexdigest())
        return keys


def customer_key_function(paths: StatePaths) -> Callable[[str], str]:
    """``customer_key`` bound to the deployment's salt (as configs/serving.yaml locates it),
    for code that joins on customer ids, such as feedback ingestion."""
    from churnops.serving.config import load_serving_config

    options = load_serving_config().pseudonymisation
    hasher = CustomerKeyHasher(load_salt(paths, options.salt_env, options.salt_file))
    return lambda customer_id: hasher(str(customer_id))
