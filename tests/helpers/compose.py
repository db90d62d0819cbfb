"""The compose files read as data: Compose's ``!override``/``!reset`` merge tags and ``$$`` escapes understood."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "docker-compose.cluster.yml"
SENTINEL = ROOT / "docker-compose.sentinel.yml"


class _ComposeLoader(yaml.SafeLoader):
    """YAML plus Compose's merge tags, read as the plain value they carry."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


for _tag in ("!override", "!reset"):
    _ComposeLoader.add_constructor(_tag, _tagged)


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=_ComposeLoader)
    return loaded


def script(service: dict[str, Any]) -> str:
    """The shell text of a ``["sh", "-c", TEXT]`` command, Compose's ``$$`` unescaped."""
    command = service["command"]
    assert command[:2] == ["sh", "-c"]
    return str(command[2]).replace("$$", "$")
