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
the value and what is allowed (``flags=True``: named as the command-line flag, ``--lr -1: ...``).

The same layer serves the typed records and JSON files of the suite: :func:`validate_model`
(a pydantic model such as :class:`mlrpl_bench.results.Record`, strictly, one line naming the
dotted field), :func:`loads_strict` / :func:`dumps_strict` (JSON without ``NaN``/``Infinity``:
refused with where they are, never turned into ``null``) and :func:`diff_fields` (the leaves two
JSON values differ in, ``train.epochs: 8 (filed) vs 2 (new)``: submit collisions, refused resumes).
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


def format_error(exc: ValidationError, model: type[BaseModel], *, owner: str, values: Mapping[str, Any],
                 flags: bool = False) -> str:
    """One line for the first error of ``exc``: owner, field, value, what is allowed.

    :param flags: name fields as command-line flags (``--val-fraction 0: ...``) instead of
        ``<owner>: option val_fraction=0 ...``.
    """
    error = exc.errors()[0]
    loc = error.get("loc") or ()
    key = str(loc[0]) if loc else ""
    where = ".".join(str(p) for p in loc) or "(value)"
    if error.get("type") == "extra_forbidden":
        valid = ", ".join(sorted(model.model_fields)) or "(none)"
        return f"{owner}: unknown option {key!r}; valid options: {valid}"
    value = values.get(key, error.get("input"))
    allowed = _allowed(model, key, error)
    if error.get("type") == "value_error":  # a vocabulary or field check: its message says what is allowed
        message, allowed = str((error.get("ctx") or {}).get("error", error.get("msg", ""))), ""
    else:
        message = error.get("msg", "invalid value")
        message = message[0].lower() + message[1:]
    tail = f"; expected {allowed}" if allowed and not allowed.startswith("a value of type a list") else ""
    if flags and error.get("type") in ("literal_error", "finite_number", "greater_than", "greater_than_equal",
                                        "less_than", "less_than_equal"):
        tail = ""  # pydantic's message already says what is allowed
    if flags:
        return f"--{key.replace('_', '-')} {value}: {message}{tail}"
    return f"{owner}: option {where}={value!r} is not valid ({message})" + tail


def build_options(options_cls: type, values: Mapping[str, Any] | None = None, *, owner: str, strings: bool = True,
                  flags: bool = False):
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
            if flags:
                raise SchemaError(f"--{key.replace('_', '-')} {value}: not a finite number")
            raise SchemaError(f"{owner}: option {key}={value!r} is not valid; expected a finite number")
    text = {k: v for k, v in values.items() if isinstance(v, str)} if strings else {}
    typed = {k: v for k, v in values.items() if k not in text}
    try:
        # Typed values: strict JSON semantics (1.7 is no int, true is no int, an int is a float).
        checked = model.model_validate_json(json.dumps(typed), strict=True)
        merged = {**{k: getattr(checked, k) for k in typed}, **_split_text(model, text)}
        instance = model.model_validate(merged, strict=False) if text else checked
    except ValidationError as exc:
        raise SchemaError(format_error(exc, model, owner=owner, values=values, flags=flags)) from None
    except (TypeError, ValueError) as exc:  # e.g. a value json cannot encode
        raise SchemaError(f"{owner}: {exc}") from None
    kwargs = {name: getattr(instance, name) for name in model.model_fields}
    for f in dataclasses.fields(options_cls):
        if f.name in kwargs and isinstance(field_default(f), tuple) and isinstance(kwargs[f.name], list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return options_cls(**kwargs)


def validate_model(model: type[BaseModel], data: Any, *, owner: str) -> BaseModel:
    """Validate ``data`` (decoded JSON) against a pydantic ``model`` strictly, as JSON types.

    :raises SchemaError: one line, ``<owner>: field <a.b.c> is <value>; expected <what>``.
    """
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise SchemaError(format_field_error(exc, owner=owner)) from None


def format_field_error(exc: ValidationError, *, owner: str) -> str:
    """One line for the first error of a (possibly nested) model: owner, field path, value, rule."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc") or ()) or "(value)"
    kind = error.get("type", "")
    if kind == "missing":
        return f"{owner}: field {where!r} is missing"
    if kind == "extra_forbidden":
        return f"{owner}: field {where!r} is not part of the schema; remove it"
    message = error.get("msg", "invalid value")
    if kind == "value_error":  # a vocabulary check: its message already says what is allowed
        message = str((error.get("ctx") or {}).get("error", message))
    return f"{owner}: field {where!r} is {error.get('input')!r}; {message[0].lower() + message[1:]}"


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NonFinite(name)


def loads_strict(text: str | bytes, *, source: str) -> Any:
    """Parse JSON text, refusing ``NaN``/``Infinity`` (not JSON) instead of reading them as floats.

    :raises BenchError: one line naming ``source`` and the problem.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except _NonFinite as exc:
        raise SchemaError(f"{source}: contains {exc} (not a JSON number); records and config files hold finite "
                          "numbers only -- write null for a missing value") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{source}: not valid JSON ({exc})") from None


def non_finite_path(value: Any, path: str = "") -> str | None:
    """The path (``metrics.test.mAP``) of the first NaN or infinity inside ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(value)"
    if isinstance(value, Mapping):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub_path, sub in items:
        found = non_finite_path(sub, sub_path)
        if found is not None:
            return found
    return None


def dumps_strict(value: Any, *, source: str, indent: int | None = 2) -> str:
    """JSON text of ``value``; a NaN or infinity is refused with the path where it is."""
    where = non_finite_path(value)
    if where is not None:
        raise SchemaError(f"{source}: field {where!r} is not a finite number; nothing was written")
    return json.dumps(value, indent=indent, allow_nan=False)


def diff_fields(before: Any, after: Any, *, old: str = "old", new: str = "new", path: str = "",
                ignore: tuple[str, ...] = ()) -> list[str]:
    """The leaves where two JSON-like values differ, as ``train.epochs: 8 (filed) vs 2 (new)``.

    :param old: / :param new: how the two sides are named in the lines.
    :param ignore: dotted paths (and their subtrees) left out, e.g. ``("runtime", "submission")``.
    """
    if path in ignore:
        return []
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[str] = []
        for key in list(before) + [k for k in after if k not in before]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in after:
                out += [] if sub in ignore else [f"{sub}: {before[key]!r} ({old}) vs missing ({new})"]
            elif key not in before:
                out += [] if sub in ignore else [f"{sub}: missing ({old}) vs {after[key]!r} ({new})"]
            else:
                out += diff_fields(before[key], after[key], old=old, new=new, path=sub, ignore=ignore)
        return out
    if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)) and list(before) == list(after):
        return []
    if before == after and type(before) is type(after):
        return []
    if isinstance(before, (int, float)) and isinstance(after, (int, float)) and not isinstance(before, bool) \
            and not isinstance(after, bool) and before == after:
        return []
    shown = (lambda v: repr(v) if not isinstance(v, (list, dict)) or len(repr(v)) <= 60 else f"{type(v).__name__} of {len(v)}")
    return [f"{path or '(value)'}: {shown(before)} ({old}) vs {shown(after)} ({new})"]


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


__all__ = ["SchemaError", "build_options", "describe_field", "dumps_strict", "field_default", "format_error",
           "diff_fields", "format_field_error", "loads_strict", "non_finite_path", "options_model", "validate_model"]
