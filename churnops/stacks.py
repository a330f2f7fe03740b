"""Register and activate ZenML stacks declared in ``configs/stacks/<name>.yaml``.

Registration is idempotent: components that exist with the same flavor are updated to
the declared configuration, missing ones are created, and the stack is (re)assembled.
Secrets never live in these files: a value may reference ``{{secret.key}}`` (resolved by
ZenML at run time) or ``${ENV_VAR}`` (expanded here, at registration).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from churnops.settings import CONFIGS_DIR

STACKS_DIR = CONFIGS_DIR / "stacks"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ComponentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    flavor: str
    configuration: dict[str, Any] = Field(default_factory=dict)


class StackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    components: dict[str, ComponentSpec]


class StackConfigError(ValueError):
    """A stack file is missing, malformed or references unset variables."""


def expand_env(value: Any) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` recursively; unset without default is an error."""
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise StackConfigError(f"environment variable '{name}' is not set")
        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def available_stacks() -> list[str]:
    return sorted(p.stem for p in STACKS_DIR.glob("*.yaml"))


def load_stack_spec(name_or_path: str) -> StackSpec:
    path = Path(name_or_path)
    if path.suffix not in {".yaml", ".yml"}:
        path = STACKS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise StackConfigError(f"no stack '{name_or_path}' (available: {', '.join(available_stacks())})")
    return StackSpec.model_validate(expand_env(yaml.safe_load(path.read_text())))


def register_stack(spec: StackSpec, activate: bool = True) -> str:
    """Create or update every component and the stack; return the stack name."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    components: dict[StackComponentType, str] = {}
    for type_name, component in spec.components.items():
        component_type = StackComponentType(type_name)
        configuration = {k: v for k, v in component.configuration.items() if v not in (None, "")}
        try:
            existing = client.get_stack_component(component_type, component.name, allow_name_prefix_match=False)
        except KeyError:
            client.create_stack_component(component.name, component.flavor, component_type, configuration)
        else:
            if existing.flavor_name != component.flavor:
                raise StackConfigError(
                    f"{type_name} '{component.name}' exists with flavor '{existing.flavor_name}', "
                    f"not '{component.flavor}'; remove it or rename the component"
                )
            if dict(existing.configuration) != configuration:
                client.update_stack_component(component.name, component_type, configuration=configuration)
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
