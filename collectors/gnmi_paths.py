"""gNMI paths and values, shared by the subscriber and the simulator (protos as shipped by pygnmi).

A path is handled as a tuple of ``(name, keys)`` elements, keys a tuple of sorted ``(key, value)``
pairs, so it can be hashed, compared and matched without protobuf objects on the hot path.
"""

from __future__ import annotations

import json
from typing import Any

from pygnmi.spec.v080 import gnmi_pb2

Elem = tuple[str, tuple[tuple[str, str], ...]]
PathT = tuple[Elem, ...]


class PathError(ValueError):
    """A path string or value that cannot be parsed."""


def parse_path(text: str) -> PathT:
    """``/interfaces/interface[name=Ethernet1]/state`` -> elements; an origin prefix (``oc:``) is dropped."""
    text = text.strip()
    if ":" in text.split("/", 1)[0]:
        text = text.split(":", 1)[1]
    elems: list[Elem] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "/":
            i += 1
            continue
        name_end = i
        while name_end < n and text[name_end] not in "/[":
            name_end += 1
        name = text[i:name_end]
        keys: list[tuple[str, str]] = []
        i = name_end
        while i < n and text[i] == "[":
            close = _key_end(text, i)
            body = text[i + 1 : close]
            if "=" not in body:
                raise PathError(f"key without '=' in {text!r}")
            key, value = body.split("=", 1)
            keys.append((key.strip(), value.replace("\\]", "]")))
            i = close + 1
        if not name:
            raise PathError(f"empty element in {text!r}")
        elems.append((name, tuple(sorted(keys))))
    return tuple(elems)


def _key_end(text: str, start: int) -> int:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "]":
            return i
        i += 1
    raise PathError(f"unclosed '[' in {text!r}")


def path_str(path: PathT) -> str:
    return "/" + "/".join(name + "".join(f"[{k}={v}]" for k, v in keys) for name, keys in path)


def to_proto(path: PathT, target: str = "", origin: str = "") -> gnmi_pb2.Path:
    return gnmi_pb2.Path(
        elem=[gnmi_pb2.PathElem(name=name, key=dict(keys)) for name, keys in path],
        target=target,
        origin=origin,
    )


def from_proto(path: gnmi_pb2.Path) -> PathT:
    if path.elem:
        return tuple((e.name, tuple(sorted(e.key.items()))) for e in path.elem)
    # gNMI < 0.4 string elements, which may carry keys inline: "interface[name=Ethernet1]"
    return tuple(elem for name in path.element if name for elem in parse_path(name))


def matches(pattern: PathT, path: PathT) -> bool:
    """True when ``path`` lies under ``pattern``; a key missing from the pattern, or ``*``, matches any."""
    if len(pattern) > len(path):
        return False
    for (pname, pkeys), (name, keys) in zip(pattern, path, strict=False):
        if pname != name and pname != "*":
            return False
        if pkeys:
            values = dict(keys)
            for key, value in pkeys:
                if value != "*" and values.get(key) != value:
                    return False
    return True


def decode_value(value: gnmi_pb2.TypedValue) -> Any:
    """A TypedValue as a Python value; JSON encodings are parsed (a container comes back as a dict)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("json_val", "json_ietf_val"):
        raw = getattr(value, kind)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PathError(f"invalid JSON value: {exc}") from None
    if kind == "decimal_val":
        return value.decimal_val.digits / 10**value.decimal_val.precision
    if kind == "leaflist_val":
        return [decode_value(v) for v in value.leaflist_val.element]
    if kind == "any_val":
        return value.any_val.value
    return getattr(value, kind)


def flatten(base: PathT, value: Any) -> list[tuple[PathT, Any]]:
    """Leaves of a JSON container value under ``base`` (module prefixes like ``openconfig-if:`` dropped)."""
    if not isinstance(value, dict):
        return [(base, value)]
    out: list[tuple[PathT, Any]] = []
    for key, child in value.items():
        name = key.split(":", 1)[1] if ":" in key else key
        if isinstance(child, list):
            for item in child:
                keys: tuple[tuple[str, str], ...] = ()
                if isinstance(item, dict) and "name" in item:
                    keys = (("name", str(item["name"])),)
                out.extend(flatten((*base, (name, keys)), item))
        else:
            out.extend(flatten((*base, (name, ())), child))
    return out


def typed(value: Any) -> gnmi_pb2.TypedValue:
    """A Python scalar as the TypedValue a target would send."""
    if isinstance(value, bool):
        return gnmi_pb2.TypedValue(bool_val=value)
    if isinstance(value, int):
        return gnmi_pb2.TypedValue(uint_val=value) if value >= 0 else gnmi_pb2.TypedValue(int_val=value)
    if isinstance(value, float):
        return gnmi_pb2.TypedValue(double_val=value)
    if isinstance(value, dict | list):
        return gnmi_pb2.TypedValue(json_ietf_val=json.dumps(value).encode())
    return gnmi_pb2.TypedValue(string_val=str(value))


__all__ = [
    "Elem",
    "PathError",
    "PathT",
    "decode_value",
    "flatten",
    "from_proto",
    "matches",
    "parse_path",
    "path_str",
    "to_proto",
    "typed",
]
