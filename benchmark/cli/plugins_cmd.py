"""``mlrpl-bench plugins``: what is registered, and where it came from (like ``datasette plugins``).

Lists every method, dataset and backbone with the distribution and version that provided it,
and every loaded pluggy plugin with the hooks it implements. ``plugins NAME`` (or ``--json``)
adds each method's options (defaults and help), profiles, supported settings and citation.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click


def _json_value(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else repr(value)


def _options(options_cls) -> list[dict[str, Any]]:
    from ..method import field_default  # here: listing plugins imports them (and torch) anyway

    if not dataclasses.is_dataclass(options_cls):
        return []
    out = []
    for f in dataclasses.fields(options_cls):
        default = field_default(f)
        type_name = _type_name(options_cls, f)
        out.append({"name": f.name, "type": type_name, "default": _json_value(default), "help": f.metadata.get("help", "")})
    return out


def _type_name(options_cls, f) -> str:
    """A field's type in words: ``float``, ``float, >= 0, <= 1``, ``known|durand``."""
    import typing

    from ..schema import describe_field

    hint = typing.get_type_hints(options_cls, include_extras=True).get(f.name, f.type)
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    allowed = describe_field(options_cls, f.name)
    if typing.get_origin(base) is typing.Literal:
        return allowed
    name = getattr(base, "__name__", str(base))
    return f"{name}, {allowed}" if allowed else name


def _source(entry) -> dict[str, str]:
    return {"plugin": entry.plugin, "distribution": entry.distribution, "version": entry.version}


def describe_method(entry) -> dict[str, Any]:
    cls = entry.obj
    return {"name": entry.name, "kind": "method", "summary": getattr(cls, "summary", ""), "citation": getattr(cls, "citation", ""),
            "method_version": getattr(cls, "version", ""), "settings": list(getattr(cls, "settings", ())),
            "options": _options(getattr(cls, "Options", None)),
            "profiles": {k: {kk: _json_value(vv) for kk, vv in v.items()} for k, v in (getattr(cls, "profiles", {}) or {}).items()},
            "class": f"{cls.__module__}.{cls.__qualname__}", **_source(entry)}


def describe_dataset(entry) -> dict[str, Any]:
    cls = entry.obj
    return {"name": entry.name, "kind": "dataset", "summary": getattr(cls, "summary", ""), "citation": getattr(cls, "citation", ""),
            "needs_data_root": bool(getattr(cls, "needs_data_root", True)),
            "default_image_size": getattr(cls, "default_image_size", None),
            "default_backbone": getattr(cls, "default_backbone", None), "options": _options(getattr(cls, "Options", None)),
            "class": f"{cls.__module__}.{cls.__qualname__}", **_source(entry)}


def describe_backbone(entry) -> dict[str, Any]:
    spec = entry.obj
    return {"name": entry.name, "kind": "backbone", "summary": getattr(spec, "summary", ""),
            "out_channels": getattr(spec, "out_channels", None), **_source(entry)}


def describe_plugins() -> list[dict[str, Any]]:
    """Every loaded pluggy plugin: name, distribution, version and the hooks it implements."""
    from .. import __version__
    from ..plugin_manager import get_plugin_manager

    pm = get_plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        hooks = sorted(caller.name for caller in (pm.get_hookcallers(plugin) or []))
        out.append({"name": name, "distribution": dist.metadata["name"] if dist else "mlrpl-bench",
                    "version": dist.version if dist else __version__, "hooks": hooks})
    return out


def collect() -> dict[str, Any]:
    """Everything ``plugins --json`` prints."""
    from ..plugin_manager import backbone_registry, dataset_registry, method_registry

    return {"methods": [describe_method(e) for e in method_registry().values()],
            "datasets": [describe_dataset(e) for e in dataset_registry().values()],
            "backbones": [describe_backbone(e) for e in backbone_registry().values()],
            "plugins": describe_plugins()}


def _details(item: dict[str, Any]) -> list[str]:
    lines = [f"{item['kind']} {item['name']}  ({item['distribution']} {item['version']}, {item.get('class', item['plugin'])})"]
    if item.get("summary"):
        lines.append(f"  {item['summary']}")
    if item.get("citation"):
        lines.append(f"  citation: {item['citation']}")
    if item["kind"] == "method":
        lines.append(f"  version: {item['method_version']}   settings: {', '.join(item['settings'])}")
    if item["kind"] == "dataset":
        lines.append(f"  needs --data-root: {'yes' if item['needs_data_root'] else 'no'}   default image size: "
                     f"{item['default_image_size']}   default backbone: {item['default_backbone']}")
    if item["kind"] == "backbone":
        lines.append(f"  out_channels: {item['out_channels']}")
    if item["kind"] == "plugin":
        lines.append(f"  hooks: {', '.join(item['hooks']) or '(none)'}")
        return lines
    if item.get("options"):
        lines.append("  options:")
        for opt in item["options"]:
            lines.append(f"    {opt['name']} ({opt['type']}, default {opt['default']!r}): {opt['help']}")
    elif item["kind"] != "backbone":
        lines.append("  options: (none)")
    if item.get("profiles"):
        lines.append("  profiles:")
        for name, values in item["profiles"].items():
            lines.append(f"    {name}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    return lines


@click.command("plugins")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print everything (options, profiles, citations) as JSON.")
def plugins(name: str | None, as_json: bool) -> None:
    """List registered methods, datasets and backbones, or describe NAME in detail."""
    from tabulate import tabulate

    from ..errors import UnknownNameError

    data = collect()
    if name is not None:
        items = [i for kind in ("methods", "datasets", "backbones") for i in data[kind] if i["name"] == name]
        if not items:  # a plugin that registers no method, dataset or backbone (e.g. a logger)
            items = [{"kind": "plugin", "plugin": p["name"], **p} for p in data["plugins"] if p["name"] == name]
        if not items:
            every = {i["name"] for kind in ("methods", "datasets", "backbones", "plugins") for i in data[kind]}
            raise UnknownNameError("plugin, dataset or backbone", name, every)
        if as_json:
            click.echo(json.dumps(items if len(items) > 1 else items[0], indent=2))
        else:
            click.echo("\n\n".join("\n".join(_details(i)) for i in items))
        return
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    sections = [
        ("Methods", data["methods"], lambda i: [i["name"], i["method_version"], i["distribution"], i["version"], i["summary"]],
         ["method", "version", "distribution", "dist version", "summary"]),
        ("Datasets", data["datasets"], lambda i: [i["name"], "yes" if i["needs_data_root"] else "no", i["distribution"], i["version"], i["summary"]],
         ["dataset", "data root", "distribution", "dist version", "summary"]),
        ("Backbones", data["backbones"], lambda i: [i["name"], i["out_channels"], i["distribution"], i["version"], i["summary"]],
         ["backbone", "channels", "distribution", "dist version", "summary"]),
        ("Plugins", data["plugins"], lambda i: [i["name"], i["distribution"], i["version"], ", ".join(i["hooks"])],
         ["plugin", "distribution", "version", "hooks"]),
    ]
    blocks = []
    for title, items, row, headers in sections:
        blocks.append(f"{title} ({len(items)})\n" + tabulate([row(i) for i in items], headers=headers, disable_numparse=True))
    click.echo("\n\n".join(blocks))
    click.echo("\n`mlrpl-bench plugins NAME` shows options, profiles and citation; --json prints everything.")
