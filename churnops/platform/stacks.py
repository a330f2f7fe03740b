"""Register and activate ZenML stacks declared in ``configs/stacks/<name>.yaml``.

Registration is idempotent: secrets, service connectors and components that exist are
updated to the declared configuration, missing ones are created, and the stack is
(re)assembled. Credentials never live in these files: secret values must be ``${ENV_VAR}``
references (read from the environment at registration and stored as ZenML secrets), and
component settings point at those secrets with ``{{secret_name.key}}`` (resolved by ZenML
when a component is used, on whichever machine uses it).

A stack also says which ZenML store it belongs to (``server``):

- ``any``: whatever the client is connected to (the embedded sqlite store or a server);
- ``local``: the local ZenML server on 127.0.0.1, started if needed (the dashboard);
- ``remote``: a deployed ZenML server the user logged in to (``zenml login URL``), which
  remote orchestrators need so their pods can report back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from churnops.core.errors import UserError
from churnops.core.settings import CONFIGS_DIR, state_paths
from churnops.platform.run_config import ConfigError, load_config

STACKS_DIR = CONFIGS_DIR / "stacks"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_WHOLE_ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
# Connector settings whose names say they are credentials (the connector's own schema, which
# knows for sure, is only available once its integration is installed).
_CREDENTIAL_NAME = re.compile(r"secret|password|token|key|json|credential", re.IGNORECASE)


class StackConfigError(UserError, ValueError):
    """A stack file is missing, malformed or references unset variables (a one-line CLI error)."""


class MissingVariableError(StackConfigError):
    """A ``${VAR}`` without default whose variable is not set."""

    def __init__(self, variable: str, path: Path | None = None, parameters: Path | None = None) -> None:
        message = f"environment variable '{variable}' is not set"
        if path is not None:
            message = f"{_shown(path)} needs '{variable}' (its header lists what to set): export it"
            message += f", or write it to {parameters}" if parameters else " (a credential: environment only)"
        super().__init__(message)
        self.variable = variable


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(CONFIGS_DIR.parent))
    except ValueError:
        return str(path)


class ComponentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    flavor: str
    configuration: dict[str, Any] = Field(default_factory=dict)
    # A service connector (declared under ``connectors``) that gives this component access
    # to ``resource_id`` (a bucket, a cluster, a registry), instead of credentials in settings.
    connector: str | None = None
    resource_id: str | None = None


class ConnectorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    auth_method: str
    configuration: dict[str, Any] = Field(default_factory=dict)
    # Check at registration that the credentials reach the cloud (fails early, needs network).
    verify: bool = True


class StackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    server: Literal["any", "local", "remote"] = "any"
    # ZenML integrations whose flavors/connectors this stack needs installed on the client.
    integrations: list[str] = Field(default_factory=list)
    secrets: dict[str, dict[str, str]] = Field(default_factory=dict)
    connectors: dict[str, ConnectorSpec] = Field(default_factory=dict)
    components: dict[str, ComponentSpec]

    @model_validator(mode="after")
    def _connectors_are_declared(self) -> StackSpec:
        for type_name, component in self.components.items():
            if component.connector and component.connector not in self.connectors:
                raise ValueError(f"{type_name} '{component.name}' uses connector '{component.connector}', "
                                 f"which is not declared under 'connectors'")
        return self


def expand_env(value: Any, environ: Mapping[str, str]) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` recursively; unset without default is an error."""
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise MissingVariableError(name)
        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ) for v in value]
    return value


def available_stacks() -> list[str]:
    return sorted(p.stem for p in STACKS_DIR.glob("*.yaml"))


def stack_file(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix not in {".yaml", ".yml"}:
        path = STACKS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise StackConfigError(f"no stack '{name_or_path}' (available: {', '.join(available_stacks())})")
    return path


@dataclass(frozen=True)
class _StackFile:
    """A stack file as written (``${VAR}`` unexpanded), read once."""

    path: Path
    raw: dict[str, Any]
    credentials: frozenset[str]  # the variables that feed secrets and connector credentials

    @cached_property
    def parameters(self) -> Path:
        """Where its parameters may be kept: ``$CHURNOPS_HOME/stacks/<name>.env`` (outside git)."""
        return state_paths().home / "stacks" / f"{self.path.stem}.env"

    @property
    def name(self) -> str:
        """The ZenML name of the stack, without needing its variables."""
        name = self.raw.get("name")
        if not isinstance(name, str) or "${" in name:
            raise StackConfigError(f"{self.path}: 'name' must be a literal string")
        return name


def _read(name_or_path: str) -> _StackFile:
    path = stack_file(name_or_path)
    try:
        raw = load_config(path)
    except ConfigError as error:
        raise StackConfigError(str(error)) from error
    return _StackFile(path, raw, _credential_variables(raw, path))


def _credential_variables(raw: dict[str, Any], path: Path) -> frozenset[str]:
    """The variables of secret values and of connector settings named like credentials; each
    of those values must be exactly one ``${VAR}``."""
    secrets = raw.get("secrets") or {}
    if not isinstance(secrets, dict):
        raise StackConfigError(f"{path}: 'secrets' must map secret names to key/value mappings")
    credentials: list[tuple[str, Any]] = []
    for secret, values in secrets.items():
        if not isinstance(values, dict):
            raise StackConfigError(f"{path}: secret '{secret}' must map keys to ${{ENV_VAR}} references")
        credentials += [(f"secret '{secret}' key '{key}'", value) for key, value in values.items()]
    connectors = raw.get("connectors") or {}
    if not isinstance(connectors, dict):
        raise StackConfigError(f"{path}: 'connectors' must map connector names to their settings")
    for connector, settings in connectors.items():
        configuration = (settings or {}).get("configuration") or {} if isinstance(settings, dict) else {}
        credentials += [(f"connector '{connector}' setting '{key}'", value)
                        for key, value in configuration.items() if _CREDENTIAL_NAME.search(key)]
    variables = set()
    for where, value in credentials:
        match = _WHOLE_ENV_REFERENCE.match(value) if isinstance(value, str) else None
        if match is None:
            raise StackConfigError(f"{path}: {where} must be exactly one ${{ENV_VAR}} reference without default; "
                                   f"credentials never go in stack files")
        variables.add(match.group(1))
    return frozenset(variables)


def read_parameters(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` prefix, quotes, comments and blank lines allowed)."""
    parameters: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise StackConfigError(f"{path}, line {number}: expected KEY=VALUE, got '{line}'")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        parameters[key] = value
    return parameters


def _environment(stack: _StackFile) -> dict[str, str]:
    """The process environment over the stack's parameters file; credentials must come from the
    environment, never from that file."""
    if not stack.parameters.is_file():
        return dict(os.environ)
    parameters = read_parameters(stack.parameters)
    written = sorted(stack.credentials & set(parameters))
    if written:
        raise StackConfigError(f"{stack.parameters} holds credentials ({', '.join(written)}): remove them from "
                               f"the file and export them in the environment (they become ZenML secrets)")
    return {**parameters, **os.environ}


def _spec(stack: _StackFile, environ: Mapping[str, str]) -> StackSpec:
    try:
        return StackSpec.model_validate(expand_env(stack.raw, environ))
    except MissingVariableError as missing:
        credential = missing.variable in stack.credentials
        raise MissingVariableError(missing.variable, stack.path, None if credential else stack.parameters) from None
    except ValidationError as error:
        raise StackConfigError(f"{stack.path}: {error}") from error


def load_stack_spec(name_or_path: str, environ: Mapping[str, str] | None = None) -> StackSpec:
    """Read, expand and validate a stack file. Variables come from ``environ``, by default the
    process environment over the stack's parameters file (``$CHURNOPS_HOME/stacks/<name>.env``)."""
    stack = _read(name_or_path)
    return _spec(stack, _environment(stack) if environ is None else environ)


def stack_name(name_or_path: str) -> str:
    """The ZenML name of the stack declared in a file, without needing its variables."""
    return _read(name_or_path).name


def ensure_server(server: str) -> None:
    """Connect the client to the store the stack belongs to."""
    from churnops.platform import zenml_server
    from churnops.platform.services import ServiceError

    if server == "local":
        try:
            url = zenml_server.start_local_server()
        except ServiceError as error:
            raise StackConfigError(f"cannot start the local ZenML server: {error}") from error
        print(f"ZenML dashboard: {url}")
    elif server == "remote" and not zenml_server.connected_to_remote_server():
        raise StackConfigError(
            "this stack needs a deployed ZenML server that its remote orchestrator can reach; "
            "connect first with `zenml login https://YOUR-ZENML-SERVER` (see docs/stacks.md)")


def check_integrations(spec: StackSpec) -> None:
    """Name the missing ``zenml integration install`` instead of failing on a flavor later."""
    from zenml.integrations.registry import integration_registry

    missing = []
    for name in spec.integrations:
        if name not in integration_registry.integrations:
            raise StackConfigError(f"stack '{spec.name}' needs unknown ZenML integration '{name}'")
        if not integration_registry.is_installed(name):
            missing.append(name)
    if missing:
        raise StackConfigError(f"stack '{spec.name}' needs the ZenML integrations {', '.join(missing)} "
                               f"on this machine: zenml integration install {' '.join(missing)} -y")


def _set_values(configuration: dict[str, Any]) -> dict[str, Any]:
    """Settings without the empty ones (an unset ``${VAR:-}``), which then take ZenML's defaults."""
    return {k: v for k, v in configuration.items() if v not in (None, "")}


def register_secrets(spec: StackSpec) -> None:
    from zenml.client import Client

    client = Client()
    for name, values in spec.secrets.items():
        try:
            existing = client.get_secret(name, allow_partial_name_match=False, allow_partial_id_match=False)
        except KeyError:
            client.create_secret(name, values=values, private=False)
            continue
        if existing.secret_values != values:
            stale = [key for key in existing.secret_values if key not in values]
            client.update_secret(existing.id, add_or_update_values=values, remove_values=stale or None)


def register_connectors(spec: StackSpec) -> dict[str, Any]:
    """Create or update the declared service connectors; return their ids by name."""
    from zenml.client import Client

    client = Client()
    ids: dict[str, Any] = {}
    for name, connector in spec.connectors.items():
        configuration = _set_values(connector.configuration)
        try:
            existing = client.get_service_connector(name, allow_name_prefix_match=False, expand_secrets=True)
        except KeyError:
            created, _ = client.create_service_connector(
                name=name, connector_type=connector.type, auth_method=connector.auth_method,
                configuration=configuration, verify=connector.verify, list_resources=False)
            assert created is not None
            ids[name] = created.id
            continue
        if existing.connector_type != connector.type:
            raise StackConfigError(f"service connector '{name}' exists with type "
                                   f"'{existing.connector_type}', not '{connector.type}'")
        if existing.auth_method != connector.auth_method or existing.configuration.plain != configuration:
            client.update_service_connector(name, auth_method=connector.auth_method,
                                            configuration=configuration, verify=connector.verify,
                                            list_resources=False)
        ids[name] = existing.id
    return ids


def register_stack(spec: StackSpec, activate: bool = True) -> str:
    """Create or update secrets, connectors, every component and the stack; return the stack name."""
    ensure_server(spec.server)
    check_integrations(spec)

    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    register_secrets(spec)
    connector_ids = register_connectors(spec)
    components: dict[StackComponentType, str] = {}
    for type_name, component in spec.components.items():
        component_type = StackComponentType(type_name)
        configuration = _set_values(component.configuration)
        try:
            existing = client.get_stack_component(component_type, component.name, allow_name_prefix_match=False)
        except KeyError:
            existing = client.create_stack_component(component.name, component.flavor, component_type, configuration)
        else:
            if existing.flavor_name != component.flavor:
                raise StackConfigError(
                    f"{type_name} '{component.name}' exists with flavor '{existing.flavor_name}', "
                    f"not '{component.flavor}'; remove it or rename the component"
                )
            if dict(existing.configuration) != configuration:
                client.update_stack_component(component.name, component_type, configuration=configuration)
        if component.connector:
            connector_id = connector_ids[component.connector]
            current = existing.connector.id if existing.connector else None
            if current != connector_id or existing.connector_resource_id != component.resource_id:
                client.update_stack_component(component.name, component_type, connector_id=connector_id,
                                              connector_resource_id=component.resource_id)
        components[component_type] = component.name
    try:
        stack = client.get_stack(spec.name, allow_name_prefix_match=False)
    except KeyError:
        client.create_stack(spec.name, components=components)
    else:
        current = {t: c[0].name for t, c in stack.components.items()}
        if current != components:
            removed = [t for t in current if t not in components]
            client.update_stack(spec.name, component_updates={
                **{t: [n] for t, n in components.items()}, **{t: [] for t in removed}})
    if activate:
        client.activate_stack(spec.name)
    return spec.name


def use_stack(name_or_path: str) -> str:
    """Register and activate a stack; with some of its variables unset, activate the stack as
    registered before (so ``--stack aws`` works without re-exporting every parameter)."""
    stack = _read(name_or_path)
    try:
        spec = _spec(stack, _environment(stack))
    except MissingVariableError as missing:
        from zenml.client import Client

        ensure_server(str(stack.raw.get("server", "any")))
        try:
            Client().activate_stack(stack.name)
        except KeyError:
            raise missing from None
        print(f"Activated stack '{stack.name}' as registered before ({missing}; set it to re-register).")
        return stack.name
    return register_stack(spec)
