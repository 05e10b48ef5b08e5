"""The one validation layer: option dataclasses checked by pydantic, errors as one line.

Every option set of the suite -- a method's ``Options``, a dataset's ``Options``, the harness's
train settings -- is a plain :mod:`dataclasses` dataclass whose field *types* say what is
allowed, declared once beside the field::

    from typing import Annotated, Literal
    from pydantic import Field

    @dataclass
    class Options:
        sarl: Literal["sd", "sa"] = field(default="sd", metadata={"help": "..."})
        gnn_steps: Annotated[int, Field(ge=1, le=100)] = field(default=3, metadata={"help": "..."})

:func:`build_options` turns user values into an instance of such a class through a pydantic
model generated from it (:func:`options_model`). Values come in two kinds:

* ``strings=True`` -- text typed on a command line (``-o gnn_steps=3``): parsed the way pydantic's
  lax mode parses text (``"3"`` -> 3, ``"true"`` -> True, ``"0.1,0.2"`` -> a tuple), nothing else;
* ``strings=False`` -- typed values from a JSON/TOML file or Python code: strict, as JSON is
  (``true`` is not an integer, ``1.7`` is not an integer, ``"3"`` is not a number; an integer is
  a valid float).

Unknown names, NaN and infinities are always refused. A failure raises :class:`SchemaError`, a
:class:`~mlrpl_bench.errors.BenchError` whose message is one line naming the owner, the field,
the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .errors import BenchError


class SchemaError(BenchError):
    """A value that does not fit its declared type, range or choices."""


def field_default(f: dataclasses.Field) -> Any:
    """The default value of a dataclass field (calling its factory), or None when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=True)


@functools.lru_cache(maxsize=None)
def options_model(options_cls: type) -> type[BaseModel]:
    """The pydantic model that validates ``options_cls`` (a dataclass), built once per class."""
    if not dataclasses.is_dataclass(options_cls):
        raise TypeError(f"{options_cls!r} is not a dataclass")
    hints = typing.get_type_hints(options_cls, include_extras=True)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(options_cls):
        if not f.init:
            continue
        fields[f.name] = (hints.get(f.name, Any), field_default(f))
    return create_model(f"{options_cls.__qualname__.replace('.', '_')}Model", __config__=_CONFIG, **fields)


def _is_sequence_type(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_sequence_type(typing.get_args(annotation)[0])
    return origin in (tuple, list)


def _split_text(model: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """Comma-separated text for tuple/list fields becomes a list (``"0.1,0.2"``)."""
    out = dict(values)
    for key, value in values.items():
        info = model.model_fields.get(key)
        if info is not None and isinstance(value, str) and _is_sequence_type(info.annotation):
            out[key] = [x.strip() for x in value.split(",") if x.strip()]
    return out


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    return False


def _allowed(model: type[BaseModel], key: str, error: dict) -> str:
    """What the field accepts, in words, from the error's context or the field's declaration."""
    ctx = error.get("ctx") or {}
    kind = error.get("type", "")
    if kind == "literal_error":
        return "one of " + str(ctx.get("expected", "")).replace("'", "")
    bounds = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}",
              "less_than_equal": "<= {le}"}
    if kind in bounds:
        return "a value " + bounds[kind].format(**ctx)
    if kind == "finite_number":
        return "a finite number"
    info = model.model_fields.get(key)
    if info is None:
        return ""
    return "a value of type " + _type_words(info.annotation)


def _type_words(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_words(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(annotation)))
    if origin in (tuple, list):
        return "a list"
    return {bool: "boolean (true/false)", int: "integer", float: "number", str: "string"}.get(annotation, str(annotation))


def format_error(exc: ValidationError, model: type[BaseModel], *, owner: str, values: Mapping[str, Any]) -> str:
    """One line for the first error of ``exc``: owner, field, value, what is allowed."""
    error = exc.errors()[0]
    loc = error.get("loc") or ()
    key = str(loc[0]) if loc else ""
    where = ".".join(str(p) for p in loc) or "(value)"
    if error.get("type") == "extra_forbidden":
        valid = ", ".join(sorted(model.model_fields)) or "(none)"
        return f"{owner}: unknown option {key!r}; valid options: {valid}"
    value = values.get(key, error.get("input"))
    allowed = _allowed(model, key, error)
    message = error.get("msg", "invalid value")
    return f"{owner}: option {where}={value!r} is not valid ({message[0].lower() + message[1:]})" + (
        f"; expected {allowed}" if allowed else "")


def build_options(options_cls: type, values: Mapping[str, Any] | None = None, *, owner: str, strings: bool = True):
    """An instance of ``options_cls`` from its defaults and ``values``.

    :param values: overrides by field name.
    :param owner: who the options belong to, for messages (``method 'hst'``, ``--config run.json: train``).
    :param strings: how to read string values: ``True`` parses text (command-line values) into
        the declared types; ``False`` reads every value strictly, as JSON types (config files).
        Non-string values are always read strictly.
    :raises SchemaError: one line naming the field, the value and what is allowed.
    """
    values = dict(values or {})
    model = options_model(options_cls)
    for key, value in values.items():
        if _non_finite(value):
            raise SchemaError(f"{owner}: option {key}={value!r} is not valid; expected a finite number")
    text = {k: v for k, v in values.items() if isinstance(v, str)} if strings else {}
    typed = {k: v for k, v in values.items() if k not in text}
    try:
        # Typed values: strict JSON semantics (1.7 is no int, true is no int, an int is a float).
        checked = model.model_validate_json(json.dumps(typed), strict=True)
        merged = {**{k: getattr(checked, k) for k in typed}, **_split_text(model, text)}
        instance = model.model_validate(merged, strict=False) if text else checked
    except ValidationError as exc:
        raise SchemaError(format_error(exc, model, owner=owner, values=values)) from None
    except (TypeError, ValueError) as exc:  # e.g. a value json cannot encode
        raise SchemaError(f"{owner}: {exc}") from None
    kwargs = {name: getattr(instance, name) for name in model.model_fields}
    for f in dataclasses.fields(options_cls):
        if f.name in kwargs and isinstance(field_default(f), tuple) and isinstance(kwargs[f.name], list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return options_cls(**kwargs)


def describe_field(options_cls: type, name: str) -> str:
    """The allowed values of one field in words (for ``mlrpl-bench plugins``), e.g. ``>= 1``."""
    model = options_model(options_cls)
    info = model.model_fields[name]
    parts = []
    for meta in info.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                parts.append(f"{sign} {bound}")
    origin = typing.get_origin(info.annotation)
    if origin is typing.Literal:
        parts.append("|".join(map(str, typing.get_args(info.annotation))))
    return ", ".join(parts)


__all__ = ["SchemaError", "build_options", "describe_field", "field_default", "format_error", "options_model"]
