"""The service's API key from a ZenML secret, for the command that starts the service.

The service reads its keys from one environment variable (``auth.key_env`` in
configs/serving.yaml, ``CHURNOPS_API_KEY``) and never imports ZenML: the Bento ships only
bentoml and scikit-learn. On a ZenML stack the key can live in a ZenML secret instead
(``auth.zenml_secret`` / ``auth.zenml_secret_key``, default secret ``churnops-api-key`` with key
``api_key``), created once with::

    zenml secret create churnops-api-key --api_key=<key>

:func:`api_key_environment` is called by ``churnops.platform.deployment.start_service`` (used by
``run.py --pipeline deploy --serve``, rollback's restart and the tests): when the variable is not
set, it looks the secret up and returns the variable to hand to ``bentoml serve``. The variable
wins over the secret; no such secret (or a store without secrets) means no key, and the service
then says at start-up that it is open. Any other failure to read the secret stops the start
rather than serving an API that was meant to be locked. No key is ever put in a message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from churnops.serving.api_keys import ApiKeyError, parse_api_keys
from churnops.serving.config import CONFIG_ENV, AuthOptions, load_serving_config


def zenml_secret_value(secret_name: str, key: str) -> str | None:
    """Value ``key`` of the ZenML secret named exactly ``secret_name``; None when there is no such secret."""
    from zenml.client import Client

    try:
        secret = Client().get_secret(secret_name, allow_partial_name_match=False, allow_partial_id_match=False)
    except KeyError:
        return None
    except NotImplementedError:  # this ZenML store keeps no secrets: nothing configured there
        return None
    except Exception as error:
        raise ApiKeyError(f"could not read the ZenML secret '{secret_name}' for the API key "
                          f"({type(error).__name__}: {str(error)[:300]}); "
                          "set the key's environment variable instead, or auth.zenml_secret: null in the "
                          "serving config to skip the look-up") from None
    values = secret.secret_values
    if key not in values:
        raise ApiKeyError(f"the ZenML secret '{secret_name}' has no key '{key}' "
                          f"(its keys: {', '.join(sorted(values))}); "
                          f"set it with `zenml secret update {secret_name} --{key}=<key>`")
    return values[key]


def api_key_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What to add to the service's environment for its API key: ``{key_env: key(s)}`` from the
    ZenML secret, or nothing (the variable is already set, or there is no secret).

    ``environ`` is the environment the service will get; its ``CHURNOPS_SERVING_CONFIG`` chooses
    the serving config, as in the service. Raises :class:`ApiKeyError` on a malformed key.
    """
    environ = os.environ if environ is None else environ
    options: AuthOptions = load_serving_config(environ.get(CONFIG_ENV)).auth
    if environ.get(options.key_env, "").strip():
        # A malformed key fails here, with a clear message, rather than in the worker.
        parse_api_keys(environ[options.key_env], f"environment variable {options.key_env}")
        return {}
    if options.zenml_secret is None:
        return {}
    value = zenml_secret_value(options.zenml_secret, options.zenml_secret_key)
    if value is None or not value.strip():
        return {}
    parse_api_keys(value, f"ZenML secret '{options.zenml_secret}' key '{options.zenml_secret_key}'")
    return {options.key_env: value.strip()}
