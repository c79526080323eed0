"""Value checkers for config parsing: each takes (value, path) and returns the typed value or
raises ``ConfigError`` naming the full key path and, for closed sets, the allowed values and
the closest valid name. bool is never accepted where a number is asked for.
"""

from __future__ import annotations

import difflib
import math
from enum import Enum
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Type, TypeVar

from ..errors import ConfigError

E = TypeVar("E", bound=Enum)


def fail(path: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {msg}" if path else msg)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _listing(choices: Iterable[str]) -> str:
    return ", ".join(repr(c) for c in choices)


def check_keys(d: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
    """Every key of ``d`` must be in ``allowed``."""
    for key in d:
        if not isinstance(key, str):
            raise fail(path, f"keys must be strings, got {key!r}")
        if key not in allowed:
            raise fail(join(path, key), f"unknown key{_suggest(key, allowed)} "
                                        f"(allowed keys: {_listing(allowed)})")


def mapping(v: Any, path: str) -> Dict[str, Any]:
    if not isinstance(v, Mapping):
        raise fail(path, f"expected an object (dict), got {type(v).__name__} {v!r}")
    return dict(v)


def boolean(v: Any, path: str) -> bool:
    if not isinstance(v, bool):
        raise fail(path, f"expected true or false, got {type(v).__name__} {v!r}")
    return v


def integer(v: Any, path: str, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise fail(path, f"expected an integer, got {type(v).__name__} {v!r}")
    if lo is not None and v < lo:
        raise fail(path, f"must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise fail(path, f"must be <= {hi}, got {v}")
    return int(v)


def number(v: Any, path: str, lo: Optional[float] = None, hi: Optional[float] = None,
           lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite float; ints are accepted and converted."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise fail(path, f"expected a number, got {type(v).__name__} {v!r}")
    x = float(v)
    if not math.isfinite(x):
        raise fail(path, f"must be finite, got {v!r}")
    lo_bad = lo is not None and (x <= lo if lo_open else x < lo)
    hi_bad = hi is not None and (x >= hi if hi_open else x > hi)
    if lo_bad or hi_bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise fail(path, f"must be in {left}{lo_s}, {hi_s}{right}, got {v!r}")
    return x


def string(v: Any, path: str) -> str:
    if not isinstance(v, str):
        raise fail(path, f"expected a string, got {type(v).__name__} {v!r}")
    return v


def string_list(v: Any, path: str) -> tuple:
    if isinstance(v, str) or not isinstance(v, (list, tuple)):
        raise fail(path, f"expected a list of strings, got {type(v).__name__} {v!r}")
    return tuple(string(item, f"{path}[{i}]") for i, item in enumerate(v))


def enum(v: Any, cls: Type[E], path: str, aliases: Optional[Mapping[str, str]] = None) -> E:
    """A member of ``cls`` by value (members themselves are accepted too)."""
    if isinstance(v, cls):
        return v
    allowed = [m.value for m in cls] + list(aliases or {})
    if not isinstance(v, str):
        raise fail(path, f"expected one of {_listing(allowed)}, got {type(v).__name__} {v!r}")
    if aliases and v in aliases:
        v = aliases[v]
    try:
        return cls(v)
    except ValueError:
        raise fail(path, f"{v!r} is not one of {_listing(allowed)}{_suggest(v, allowed)}") \
            from None


def optional(check, v: Any, path: str, *args, **kwargs):
    return None if v is None else check(v, path, *args, **kwargs)
