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

Unknown names, NaN and infinities, integers beyond 64 bits (they overflow deep inside a run) and
values of no JSON type (a TOML date) are always refused; command-line text for an integer field
must be an integer (pydantic's lax parsing alone reads ``0-4`` as -4). A failure raises :class:`SchemaError`, a
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
import os
import re
import stat
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, create_model

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
    return _type_words(info.annotation)


def _type_words(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_words(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(annotation)))
    if origin in (tuple, list):
        return "a list"
    if origin in (dict, Mapping) or annotation is dict:
        return "a table of name = value pairs"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_words(a) for a in typing.get_args(annotation))
    return {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string",
            type(None): "null"}.get(annotation, str(annotation))


def _base_type(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` and ``Optional`` wrappers (``Annotated[int, ...] | None`` -> int)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


#: How an integer is written on a command line (pydantic's lax parsing would also read "0-4" as -4).
_INT_TEXT = re.compile(r"\s*[+-]?\d+(_\d+)*(\.0*)?\s*")


def _text_problem(model: type[BaseModel], key: str, text: Any) -> str | None:
    """Why command-line ``text`` cannot be the integer its field declares (None when it can, or
    when the field is not an integer)."""
    info = model.model_fields.get(key)
    if info is None or any(isinstance(m, BeforeValidator) for m in info.metadata):
        return None  # the field parses its own text (e.g. --shard i/n)
    base = _base_type(info.annotation)
    items = text if isinstance(text, list) else [text]
    if typing.get_origin(base) in (tuple, list):
        args = [a for a in typing.get_args(base) if a is not Ellipsis]
        base = _base_type(args[0]) if len(set(map(_base_type, args))) == 1 else None
    if base is not int:
        return None
    for item in items:
        if isinstance(item, str) and not _INT_TEXT.fullmatch(item):
            return f"{item!r} is not an integer"
    return None


#: Integers a value may hold: what numpy and torch store (larger ones overflow deep inside a run).
INT_LIMIT = 2**63


def _first_path(value: Any, bad: Any, path: str = "") -> str | None:
    """The path (``train.lr``, ``seeds[1]``) of the first leaf inside ``value`` for which ``bad`` holds, or None."""
    if bad(value):
        return path or "(value)"
    if isinstance(value, Mapping):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    return next((found for sub_path, sub in items if (found := _first_path(sub, bad, sub_path)) is not None), None)


def _huge_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and not -INT_LIMIT <= value < INT_LIMIT


def _not_json(value: Any) -> bool:
    """A leaf that is no JSON type (a TOML date or time, a Python object)."""
    return not (value is None or isinstance(value, (bool, int, float, str, Mapping, list, tuple)))


def _at(values: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted/indexed ``path`` (``a.b[0]``) inside ``values``."""
    out: Any = values
    for part in re.findall(r"[^.\[\]]+", path):
        out = out[int(part)] if isinstance(out, (list, tuple)) else out[part]
    return out


def _flag_value(value: Any) -> str:
    """A command-line value as typed (``--lr -1``), quoted when it is empty or holds spaces or control characters."""
    if isinstance(value, str) and (not value or not value.isprintable() or any(ch.isspace() for ch in value)):
        return repr(value)
    return str(value)


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
    # The offending value: as typed for a flag; for a nested location of a file (tune.lr, shard.0) the input at it.
    value = values.get(key, error.get("input")) if flags or len(loc) <= 1 else error.get("input")
    allowed = _allowed(model, key, error) if len(loc) <= 1 or error.get("type") != "value_error" else ""
    if len(loc) > 1 and allowed and not error.get("ctx"):
        allowed = ""  # the declared type is the whole field's (a table, a list), not this item's
    if error.get("type") == "value_error":  # a vocabulary or field check: its message says what is allowed
        message, allowed = str((error.get("ctx") or {}).get("error", error.get("msg", ""))), ""
    else:
        message = error.get("msg", "invalid value")
        message = message[0].lower() + message[1:]
    tail = f"; expected {allowed}" if allowed and allowed != "a list" else ""
    if flags and error.get("type") in ("literal_error", "finite_number", "greater_than", "greater_than_equal",
                                        "less_than", "less_than_equal"):
        tail = ""  # pydantic's message already says what is allowed
    if flags:
        return f"--{key.replace('_', '-')} {_flag_value(value)}: {message}{tail}"
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

    def refuse(path: str, value: Any, why: str) -> SchemaError:
        if flags:
            return SchemaError(f"--{path.replace('_', '-')} {_flag_value(value)}: {why}")
        return SchemaError(f"{owner}: option {path}={value!r} is not valid; {why}")

    for key, value in values.items():
        where = non_finite_path(value, key)
        if where is not None:
            raise refuse(where, _at(values, where), "expected a finite number")
        where = _first_path(value, _not_json, key)
        if where is not None:  # e.g. a TOML date or time
            info = model.model_fields.get(key)
            expected = _type_words(info.annotation) if info is not None and where == key else "a JSON value"
            raise refuse(where, _at(values, where), f"expected {expected}")
    text = {k: v for k, v in values.items() if isinstance(v, str)} if strings else {}
    typed = {k: v for k, v in values.items() if k not in text}
    split = _split_text(model, text)
    for key, value in split.items():
        problem = _text_problem(model, key, value)
        if problem is not None:
            raise refuse(key, text[key], f"{problem}; expected an integer, e.g. 3")
    try:
        # Typed values: strict JSON semantics (1.7 is no int, true is no int, an int is a float).
        checked = model.model_validate_json(json.dumps(typed), strict=True)
        merged = {**{k: getattr(checked, k) for k in typed}, **split}
        instance = model.model_validate(merged, strict=False) if text else checked
    except ValidationError as exc:
        raise SchemaError(format_error(exc, model, owner=owner, values=values, flags=flags)) from None
    except (TypeError, ValueError) as exc:  # a value json cannot encode (caught above) or a model error
        raise SchemaError(f"{owner}: {exc}") from None
    kwargs = {name: getattr(instance, name) for name in model.model_fields}
    for key in values:
        where = _first_path(kwargs.get(key), _huge_int, key)
        if where is not None:
            raise refuse(where, _at(kwargs, where), "does not fit in 64 bits; expected an integer between -2**63 "
                         "and 2**63 - 1")
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


class _DuplicateKey(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    """``parse_float``: a number too large for a float (``1e400``) would become infinity silently."""
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a JSON object naming one key twice is refused (``json`` keeps the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


#: Largest file :func:`read_text_file` reads (records, configs, manifests, sweep state): a bigger one,
#: or an endless one such as ``/dev/zero``, is refused before it fills the memory.
MAX_TEXT_BYTES = 64 * 1024 * 1024


def read_bounded(path: str | Path, limit: int) -> bytes:
    """The bytes of ``path``, refusing (``ValueError``) a file of more than ``limit`` bytes before
    reading it whole; a device or pipe with no size (``/dev/zero``) is read to ``limit + 1`` at most.

    :raises OSError: as ``open`` raises it (missing, a directory, no permission).
    """
    if stat.S_ISFIFO(os.stat(path).st_mode) or stat.S_ISSOCK(os.stat(path).st_mode):
        raise ValueError("a pipe or socket")  # opening a pipe would wait for a writer, forever
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise ValueError(f"{size} bytes")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"more than {limit} bytes")
    return data


def read_text_file(path: str | Path, *, source: str | None = None, what: str = "file", hint: str = "",
                   limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark dropped), or one line saying why not.

    :param source: how the file is named in messages (default: its path).
    :param what: what the file should be, for messages (``record file``).
    :param hint: what to pass instead, appended to the messages about a missing file or a folder.
    :param limit: the largest size read (:data:`MAX_TEXT_BYTES`); a larger file is refused unread.
    :raises SchemaError: the file is missing, a directory, too large, unreadable or not UTF-8.
    """
    path = Path(path)
    source = source or str(path)
    tail = f"; {hint}" if hint else ""
    try:
        data = read_bounded(path, limit)
    except FileNotFoundError:
        raise SchemaError(f"{source}: {what} not found{tail}") from None
    except IsADirectoryError:
        raise SchemaError(f"{source}: is a directory, not a {what}{tail}") from None
    except OSError as exc:
        fix = "check the file's permissions" if isinstance(exc, PermissionError) else "pass a readable file"
        raise SchemaError(f"{source}: cannot read ({exc.strerror or type(exc).__name__}); {fix}") from None
    except ValueError as exc:
        if "pipe" in str(exc):
            raise SchemaError(f"{source}: is {exc}, not a {what}; pass a file") from None
        raise SchemaError(f"{source}: {exc} is too large for a {what} (at most {limit} bytes are read); "
                          "is it the right file?") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{source}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); save "
                          "the file as UTF-8") from None


def read_json_file(path: str | Path, *, source: str | None = None, what: str = "JSON file", hint: str = "") -> Any:
    """:func:`read_text_file` then :func:`loads_strict`: one strict reader for every JSON file the suite reads."""
    return loads_strict(read_text_file(path, source=source, what=what, hint=hint), source=source or str(path))


def loads_strict(text: str | bytes, *, source: str) -> Any:
    """Parse JSON text, refusing ``NaN``/``Infinity`` (not JSON) instead of reading them as floats,
    and an object that names one key twice (``json`` would keep the last one silently).

    A leading UTF-8 byte-order mark (some Windows editors write one) is allowed. Every JSON text
    the suite reads -- configs, records, manifests, caches' metadata, sweep state -- goes through here.

    :raises SchemaError: one line naming ``source`` and the problem.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SchemaError(f"{source}: not UTF-8 text (byte {exc.start}); not a JSON file") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as exc:
        raise SchemaError(f"{source}: key {str(exc)!r} appears twice in one object; keep one of them") from None
    except _NonFinite as exc:
        try:  # parsed again, leniently, only to say where (the first problem found is reported either way)
            where = non_finite_path(json.loads(text))
        except ValueError:
            where = None
        field = f"field {where!r} is {exc}" if where else f"contains {exc}"
        raise SchemaError(f"{source}: {field} (not a JSON number); records and config files hold finite "
                          "numbers only -- write null for a missing value") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{source}: not valid JSON ({exc})") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise SchemaError(f"{source}: not a JSON file of this suite ({str(exc).splitlines()[0][:120]})") from None
    except RecursionError:
        raise SchemaError(f"{source}: nested too deeply to be a JSON file of this suite") from None


def loads_config(text: str, *, source: str, toml: bool) -> Any:
    """Parse the text of a config or state file, JSON or TOML, as strictly as :func:`loads_strict`:
    duplicate keys (TOML refuses them itself), ``nan``/``inf`` (TOML allows them) refused.

    :raises SchemaError: one line naming ``source``.
    """
    if not toml:
        return loads_strict(text, source=source)
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{source}: not valid TOML ({exc})") from None
    except (ValueError, RecursionError) as exc:  # an integer of too many digits, nesting too deep
        raise SchemaError(f"{source}: not a config file of this suite ({str(exc).splitlines()[0][:120] or type(exc).__name__})") from None
    where = non_finite_path(data)
    if where is not None:
        raise SchemaError(f"{source}: field {where!r} is not a finite number (nan/inf); config files hold finite "
                          "numbers only")
    return data


def read_config(path: str | Path, *, source: str, what: str = "config file", hint: str = "pass a .json or .toml file") -> Any:
    """The one strict reader of config and state files: JSON, or TOML by the ``.toml`` suffix.

    Used by ``run --config``, ``sweep --config`` and the sweep's ``sweep.json``; a binary,
    truncated, oversized or duplicate-keyed file is one line naming it (:func:`read_text_file`,
    :func:`loads_config`).
    """
    path = Path(path)
    text = read_text_file(path, source=source, what=what, hint=hint)
    return loads_config(text, source=source, toml=path.suffix == ".toml")


def non_finite_path(value: Any, path: str = "") -> str | None:
    """The path (``metrics.test.mAP``) of the first NaN or infinity inside ``value``, or None."""
    return _first_path(value, lambda v: isinstance(v, float) and not math.isfinite(v), path)


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
           "diff_fields", "format_field_error", "loads_config", "loads_strict", "non_finite_path", "options_model", "read_bounded", "read_config", "read_json_file",
           "read_text_file", "validate_model"]
