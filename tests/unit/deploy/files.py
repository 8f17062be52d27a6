"""Reading the deployment files as Docker, docker compose and Kubernetes would: shared by the deploy tests."""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dockerfile  # type: ignore[import-not-found]
import yaml  # type: ignore[import-untyped]
from pydantic import SecretStr

from homework_shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
INSTALL_SCRIPT = ROOT / "deploy" / "docker" / "install-service.sh"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
K8S = ROOT / "deploy" / "k8s"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
SERVICES = ("assignment", "reminder", "insights")
OVERLAYS = ("dev", "prod")
CONTAINER_PORT = 8000
NON_ROOT_UID = 10001


def _load_deploy_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


config_reference = _load_deploy_module("homework_deploy_config_reference", ROOT / "deploy" / "config_reference.py")
k8s_render = _load_deploy_module("homework_deploy_k8s_render", K8S / "render.py")


# ---- the services' settings ---------------------------------------------------------------


def settings_class(service: str) -> type[ServiceSettings]:
    """The service's settings class; fails (ModuleNotFoundError) while the service is not built."""
    cls: type[ServiceSettings] = config_reference.settings_class(service)
    return cls


def env_fields(service: str) -> dict[str, Any]:
    """Environment variable name -> pydantic field, for every setting the service reads."""
    return {name.upper(): info for name, info in settings_class(service).model_fields.items()}


def required_vars(service: str) -> set[str]:
    return {name for name, info in env_fields(service).items() if info.is_required()}


def secret_vars(service: str) -> set[str]:
    """Variables whose values are secrets: SecretStr fields, names with SECRET/KEY/PASSWORD/TOKEN, URIs."""
    return {name for name, info in env_fields(service).items() if config_reference.is_secret(name, info)}


def build_settings(service: str, env: dict[str, str]) -> ServiceSettings:
    """The service's settings as the process would read them from ``env`` (and nothing else)."""
    cls = settings_class(service)
    values: dict[str, Any] = {name.lower(): value for name, value in env.items()}
    return cls(**values)


def is_secret_annotation(info: Any) -> bool:
    return info.annotation is SecretStr or "SecretStr" in str(info.annotation)


# ---- Dockerfile ---------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    commands: list[Any] = field(default_factory=list)

    def of(self, cmd: str) -> list[Any]:
        return [c for c in self.commands if c.cmd == cmd]


@functools.cache
def dockerfile_stages() -> dict[str, Stage]:
    """The Dockerfile's stages by name, parsed by BuildKit's own parser."""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            values = list(command.value)
            name = values[2] if len(values) >= 3 and values[1].upper() == "AS" else f"stage-{len(stages)}"
            current = Stage(name=name, base=values[0])
            stages[name] = current
        elif current is not None:
            current.commands.append(command)
    return stages


def dockerfile_args() -> dict[str, str]:
    """Global ``ARG`` defaults (those before the first FROM)."""
    args: dict[str, str] = {}
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            break
        if command.cmd == "ARG":
            key, _, value = command.value[0].partition("=")
            args[key] = value
    return args


def stage_chain(target: str) -> list[Stage]:
    """``target`` and the stages it is built FROM, the target first."""
    stages = dockerfile_stages()
    chain = [stages[target]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def context_copies(target: str) -> list[tuple[list[str], str]]:
    """The (sources, destination) of every COPY from the build context into ``target``'s build stages."""
    stages = dockerfile_stages()
    copies: list[tuple[list[str], str]] = []
    pending = [target]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or name not in stages:
            continue
        seen.add(name)
        stage = stages[name]
        pending.append(stage.base)
        for command in stage.of("COPY"):
            source_stage = next((f.split("=", 1)[1] for f in command.flags if f.startswith("--from=")), None)
            if source_stage is not None:
                pending.append(source_stage)
                continue
            *sources, destination = command.value
            copies.append((list(sources), destination))
    return copies


# ---- .dockerignore ------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex over slash-separated paths."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
                out = out[:-2] + "(?:.*/)?"
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(f"^{out}$")


@functools.cache
def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def dockerignored(path: str) -> bool:
    """Whether Docker leaves ``path`` (relative, slash-separated) out of the build context.

    As Docker does: the last matching rule wins, and a rule matching a parent directory
    matches everything under it.
    """
    parts = path.strip("/").split("/")
    excluded = False
    for negated, regex in dockerignore_rules():
        if any(regex.match("/".join(parts[: i + 1])) for i in range(len(parts))):
            excluded = not negated
    return excluded


def context_files() -> Iterator[str]:
    """Every file of the repository that the build context holds."""
    skip = {".git", ".venv", "node_modules", ".devstack"}
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if relative.parts and relative.parts[0] in skip:
            continue
        if path.is_file() and not dockerignored(relative.as_posix()):
            yield relative.as_posix()


def copy_build_context(target: str, destination: Path) -> list[str]:
    """Lay out what ``target``'s COPY instructions take from the context, as the image's /src would hold it."""
    files = list(context_files())
    copied = []
    for sources, _ in context_copies(target):
        for source in sources:
            source = source.rstrip("/")
            for relative in files:
                if relative == source or relative.startswith(source + "/"):
                    target_path = destination / relative
                    target_path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / relative, target_path)
                    copied.append(relative)
    return copied


# ---- docker compose -----------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\})")


def env_example() -> dict[str, str]:
    """``NAME=value`` lines of .env.example."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


def compose_variables() -> dict[str, str | None]:
    """Each variable docker-compose.yml interpolates, with its default (None if it has none)."""
    found: dict[str, str | None] = {}
    for match in _INTERPOLATION.finditer(COMPOSE_FILE.read_text()):
        if match.group("name"):
            op = match.group("op") or ""
            found[match.group("name")] = match.group("arg") if op.endswith("-") else None
    return found


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ``${X}``, ``${X:-d}``, ``${X-d}``, ``${X:?e}``, ``${X?e}``, ``$$``."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group("name")
        if name is None:
            return "$"
        op, arg = match.group("op") or "", match.group("arg")
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise KeyError(f"{name}: {arg}")
        return value or ""

    return _INTERPOLATION.sub(substitute, text)


def compose_raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml as compose reads it with ``env`` (default: .env.example) for its variables."""
    loaded: dict[str, Any] = yaml.safe_load(
        interpolate(COMPOSE_FILE.read_text(), env_example() if env is None else env)
    )
    return loaded


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment as strings (mapping or list form)."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.partition("=") for item in environment)
        return {k: v for k, _, v in pairs}
    return {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in environment.items()}


def seconds(duration: str | int | float) -> float:
    """A compose duration (``1m30s``, ``40s``, ``500ms``) in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(ms|us|h|m|s)", duration):
        total += float(number) * units[unit]
    return total


# ---- Kubernetes ---------------------------------------------------------------------------


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay's rendered manifests (kustomize), one dict per object."""
    return tuple(doc for doc in yaml.safe_load_all(k8s_render.render(overlay)) if doc)


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


def config_maps(overlay: str) -> dict[str, dict[str, str]]:
    return {name: dict(o.get("data") or {}) for name, o in objects(overlay, "ConfigMap").items()}


def secrets(overlay: str) -> dict[str, dict[str, str]]:
    import base64

    out = {}
    for name, obj in objects(overlay, "Secret").items():
        data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        data.update(obj.get("stringData") or {})
        out[name] = data
    return out


@dataclass
class EnvSource:
    """Where a container's variable comes from."""

    kind: str  # "value", "configmap", "secret", "field"
    value: str | None = None
    ref: str | None = None
    key: str | None = None
    optional: bool = False


def container_env(overlay: str, container: dict[str, Any]) -> dict[str, EnvSource]:
    """Every variable a container gets: envFrom ConfigMaps/Secrets first, then ``env`` entries override."""
    cms, secs = config_maps(overlay), secrets(overlay)
    env: dict[str, EnvSource] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            for key, value in cms.get(name, {}).items():
                env[key] = EnvSource("configmap", value=value, ref=name, key=key)
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            for key, value in secs.get(name, {}).items():
                env[key] = EnvSource("secret", value=value, ref=name, key=key)
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = EnvSource("value", value=item["value"])
            continue
        value_from = item["valueFrom"]
        if "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            secret_value = secs.get(ref["name"], {}).get(ref["key"])
            env[item["name"]] = EnvSource(
                "secret", value=secret_value, ref=ref["name"], key=ref["key"], optional=bool(ref.get("optional"))
            )
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            env[item["name"]] = EnvSource("configmap", value=cms.get(ref["name"], {}).get(ref["key"]), ref=ref["name"])
        else:
            env[item["name"]] = EnvSource("field", value="pod-name-0", ref=str(value_from))
    return env


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels; matchExpressions In/Exists) against a pod's labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        if operator == "In" and labels.get(key) not in expression["values"]:
            return False
        if operator == "Exists" and key not in labels:
            return False
    return True


def image_repository(image: str) -> str:
    """``registry.example.com/homework/homework-assignment:0.1.0`` -> ``homework-assignment``."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]
