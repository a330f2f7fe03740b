"""Customer ids are pseudonymised before anything is written: a keyed hash of the id.

``customer_key`` is 16 lowercase hex digits of pandas' vectorised SipHash-2-4 of the UTF-8 id
(``pandas.util.hash_array``: SipHash-2-4, then a fixed bijective 64-bit mix). SipHash is a
keyed pseudorandom function, so without the key nobody can recompute a customer's key from
its id. The key is 112 bits derived from the salt; the 64-bit output makes a collision
between two customers unlikely below about 10^8 customers (p ≈ n² / 2^65). It hashes
thousands of ids in C per call, about 0.1 µs an id: a Python loop over hashlib's SHA-256
cost four times as much and was the largest part of the inference log's CPU.

The salt is a secret of the deployment, not of the code: it comes from an environment
variable (``CHURNOPS_CUSTOMER_SALT`` by default) or from a file under the state folder that
is created with random bytes the first time. Feedback ingestion must hash ids with the same
salt so outcomes join to predictions: use :func:`customer_keys_function`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from churnops.core.settings import StatePaths

# Byte -> its two lowercase hex digits as one little-endian uint16 (memory order: high digit first).
_HEX_PAIRS = np.frombuffer("".join(f"{byte:02x}" for byte in range(256)).encode(), dtype="<u2")
KEY_LENGTH = 16  # hex digits of a customer_key


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


def siphash_key(salt: bytes) -> str:
    """The 16-byte SipHash key derived from ``salt``, as the ASCII text pandas expects.

    ``pandas.util.hash_array`` takes its key as a string whose UTF-8 encoding is 16 bytes, so
    each byte keeps 7 bits of SHA-256(salt): 112 bits of key.
    """
    digest = hashlib.sha256(b"churnops customer key\0" + salt).digest()
    return "".join(chr(byte & 0x7F) for byte in digest[:16])


class CustomerKeyHasher:
    """Customer keys of many ids at once; the key is derived from the salt once."""

    def __init__(self, salt: bytes) -> None:
        self._key = siphash_key(salt)

    def keys(self, customer_ids: Sequence[str | None] | np.ndarray) -> pa.StringArray:
        """The keys of ``customer_ids`` in order, null where the id is null (None)."""
        import pandas as pd

        has_nulls = None in customer_ids  # a C-level scan of a list
        ids = np.asarray(customer_ids, dtype=object)
        # Ids are valid Unicode: msgspec, pydantic and Arrow's CSV reader refuse lone surrogates,
        # which pandas' strict UTF-8 encoding could not hash.
        hashes = pd.util.hash_array(ids, hash_key=self._key, categorize=False)
        # Big-endian bytes, each looked up as its two hex digits, straight into an Arrow buffer.
        text = _HEX_PAIRS[hashes.astype(">u8").view(np.uint8)]
        offsets = np.arange(0, KEY_LENGTH * (len(ids) + 1), KEY_LENGTH, dtype=np.int32)
        validity, nulls = None, 0
        if has_nulls:
            present = np.not_equal(ids, None)
            validity, nulls = pa.array(present, type=pa.bool_()).buffers()[1], len(ids) - int(present.sum())
        return pa.StringArray.from_buffers(len(ids), pa.py_buffer(offsets), pa.py_buffer(text), validity, nulls)


def customer_key(customer_id: str, salt: bytes) -> str:
    """The pseudonym of one ``customer_id`` under ``salt``."""
    return CustomerKeyHasher(salt).keys([customer_id])[0].as_py()


def customer_keys_function(paths: StatePaths) -> Callable[[Sequence[str | None]], list[str | None]]:
    """Customer keys of many ids under the deployment's salt (as configs/serving.yaml locates
    it), for code that joins on customer ids, such as feedback ingestion."""
    from churnops.serving.config import load_serving_config

    options = load_serving_config().pseudonymisation
    hasher = CustomerKeyHasher(load_salt(paths, options.salt_env, options.salt_file))
    return lambda customer_ids: hasher.keys([None if c is None else str(c) for c in customer_ids]).to_pylist()
