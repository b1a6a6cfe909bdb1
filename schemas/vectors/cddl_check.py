"""A small validator for the subset of CDDL (RFC 8610) that schemas/cddl/ uses.

It exists so that generate.py can check every golden vector against the CDDL files
themselves, not against a second hand-written copy of the schema. It is not a general
CDDL implementation. Supported: type and group rules; type choices "/"; ranges ".." and
"..."; the controls .size, .regexp (Python re.fullmatch; the patterns used are valid
XSD and Python alike), .ge, .le, .gt, .lt; maps, arrays, parenthesised types; member
keys "name:", "value:" and "type =>"; occurrences ?, *, +, n*m; the prelude types
uint, nint, int, float, float16, float32, float64, tstr, text, bstr, bytes, bool, true,
false, null, nil, any. Not supported: group choices "//", sockets, generics, tags,
unwrap "~", "&" enumerations, the other controls.

Values are what cbor2 decodes: int, float, str, bytes, bool, list, dict.

Besides validating, a match reports for every optional bare-key member ("? key: ...")
of every map it matched whether the key was present; generate.py uses this to check
that the vectors of a type cover each optional member both present and absent.
"""

from __future__ import annotations

import math
import pathlib
import re

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|;[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ctl>\.[a-z]+)
  | (?P<range>\.\.\.|\.\.)
  | (?P<name>[A-Za-z@_$](?:[A-Za-z0-9@_$.-]*[A-Za-z0-9@_$])?)
  | (?P<punct>=>|[=(){}\[\],:/?*+])
    """,
    re.VERBOSE,
)

_PRELUDE = {
    "uint", "nint", "int", "float", "float16", "float32", "float64", "tstr", "text",
    "bstr", "bytes", "bool", "true", "false", "null", "nil", "any",
}


class CddlError(Exception):
    pass


def _tokenize(text: str):
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise CddlError(f"cannot tokenize at {text[pos:pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        tokens.append((kind, m.group()))
    tokens.append(("end", ""))
    return tokens


def _number(text: str):
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return float(text)


class _Parser:
    def __init__(self, text: str):
        self.t = _tokenize(text)
        self.i = 0
        self.rule = ""

    def peek(self, k=0):
        return self.t[self.i + k]

    def take(self, value=None):
        tok = self.t[self.i]
        if value is not None and tok[1] != value:
            raise CddlError(f"rule {self.rule}: expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def rules(self):
        types, groups = {}, {}
        while self.peek()[0] != "end":
            kind, name = self.take()
            if kind != "name":
                raise CddlError(f"expected a rule name, got {name!r}")
            self.rule = name
            self.take("=")
            if self.peek()[1] == "(" and self._paren_is_group():
                self.take("(")
                groups[name] = self.group(")")
                self.take(")")
            else:
                types[name] = self.type()
        return types, groups

    def _paren_is_group(self):
        depth = 0
        j = self.i
        while True:
            kind, tok = self.t[j]
            if kind == "end":
                return False
            if tok in "([{":
                depth += 1
            elif tok in ")]}":
                depth -= 1
                if depth == 0:
                    return False
            elif depth == 1 and tok in (":", "=>"):
                return True
            j += 1

    def type(self):
        choices = [self.type1()]
        while self.peek()[1] == "/":
            self.take()
            choices.append(self.type1())
        return choices[0] if len(choices) == 1 else ("choice", choices)

    def type1(self):
        t = self.type2()
        kind, tok = self.peek()
        if kind == "range":
            self.take()
            return ("range", t, self.type2(), tok == "..")
        if kind == "ctl":
            self.take()
            return ("ctl", t, tok[1:], self.type2())
        return t

    def type2(self):
        kind, tok = self.take()
        if kind == "number":
            return ("lit", _number(tok))
        if kind == "string":
            return ("lit", _json_string(tok))
        if kind == "name":
            return ("name", tok)
        if tok == "(":
            t = self.type()
            self.take(")")
            return t
        if tok == "{":
            g = self.group("}")
            self.take("}")
            return ("map", g, self.rule)
        if tok == "[":
            g = self.group("]")
            self.take("]")
            return ("array", g, self.rule)
        raise CddlError(f"rule {self.rule}: unexpected {tok!r}")

    def group(self, close):
        entries = []
        while self.peek()[1] != close:
            entries.append(self.entry())
            if self.peek()[1] == ",":
                self.take()
        return entries

    def entry(self):
        lo, hi = 1, 1
        kind, tok = self.peek()
        if tok == "?":
            self.take()
            lo, hi = 0, 1
        elif tok == "+":
            self.take()
            lo, hi = 1, math.inf
        elif tok == "*":
            self.take()
            lo, hi = 0, math.inf
        elif kind == "number" and self.peek(1)[1] == "*":
            self.take()
            self.take("*")
            lo, hi = int(tok), math.inf
            if self.peek()[0] == "number":
                hi = int(self.take()[1])
        kind, tok = self.peek()
        if kind in ("name", "string", "number") and self.peek(1)[1] == ":":
            self.take()
            self.take(":")
            key = tok if kind == "name" else (_json_string(tok) if kind == "string" else _number(tok))
            return (lo, hi, "member", key, self.type())
        t = self.type()
        if self.peek()[1] == "=>":
            self.take()
            return (lo, hi, "keyed", t, self.type())
        return (lo, hi, "bare", None, t)


def _json_string(tok: str) -> str:
    import json

    return json.loads(tok)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class Schema:
    """Rules parsed from one or more CDDL files."""

    def __init__(self, *paths: pathlib.Path, strict_floats: bool = False):
        """strict_floats: in a choice whose alternatives are all numbers, some of them
        floats, match only the float alternatives. This checks what an encoder writes
        (a float member as a CBOR float) rather than what a decoder accepts."""
        self.strict_floats = strict_floats
        text = "\n".join(pathlib.Path(p).read_text(encoding="utf-8") for p in paths)
        self.types, self.groups = _Parser(text).rules()
        for name in self.types:
            if name in self.groups:
                raise CddlError(f"rule {name} defined twice")

    def validate(self, rule: str, value):
        """Returns (error or None, observations). observations: (map label, key, present)."""
        if rule not in self.types:
            raise CddlError(f"no type rule {rule}")
        obs = self._match(self.types[rule], value, rule)
        if isinstance(obs, str):
            return obs, []
        return None, obs

    # Each _match returns a list of observations on success, or an error string.

    def _literal(self, t):
        while t[0] == "name" and t[1] in self.types:
            t = self.types[t[1]]
        if t[0] != "lit":
            raise CddlError(f"not a literal value: {t}")
        return t[1]

    def _match(self, t, v, path):
        kind = t[0]
        if kind == "choice":
            errors = []
            choices = t[1]
            if self.strict_floats:
                kinds = [self._numeric_kind(c) for c in choices]
                if "float" in kinds and all(k in ("int", "float") for k in kinds):
                    choices = [c for c, k in zip(choices, kinds) if k == "float"]
            for c in choices:
                r = self._match(c, v, path)
                if not isinstance(r, str):
                    return r
                errors.append(r)
            return f"{path}: no choice matches ({'; '.join(errors)})"
        if kind == "lit":
            want = t[1]
            if type(want) is type(v) and want == v:
                return []
            return f"{path}: expected {want!r}, got {v!r}"
        if kind == "name":
            return self._match_name(t[1], v, path)
        if kind == "range":
            lo, hi = self._literal(t[1]), self._literal(t[2])
            if _is_int(lo) and _is_int(hi):
                ok = _is_int(v)
            else:
                ok = isinstance(v, float)
            if not ok:
                return f"{path}: {v!r} is not of the range's type"
            if not (lo <= v and (v <= hi if t[3] else v < hi)):
                return f"{path}: {v!r} outside {lo}..{hi}"
            return []
        if kind == "ctl":
            r = self._match(t[1], v, path)
            if isinstance(r, str):
                return r
            op, arg = t[2], t[3]
            if op == "size":
                n = len(v.encode("utf-8")) if isinstance(v, str) else len(v)
                r2 = self._match(arg, n, path + ".size")
                return r if not isinstance(r2, str) else f"{path}: size {n} not in {arg}"
            if op == "regexp":
                if re.fullmatch(self._literal(arg), v):
                    return r
                return f"{path}: {v!r} does not match {self._literal(arg)!r}"
            cmp = {"ge": lambda a, b: a >= b, "le": lambda a, b: a <= b,
                   "gt": lambda a, b: a > b, "lt": lambda a, b: a < b}.get(op)
            if cmp is None:
                raise CddlError(f"unsupported control .{op}")
            return r if cmp(v, self._literal(arg)) else f"{path}: {v!r} fails .{op} {self._literal(arg)}"
        if kind == "map":
            return self._match_map(t, v, path)
        if kind == "array":
            return self._match_array(t, v, path)
        raise CddlError(f"unknown node {t}")

    def _numeric_kind(self, t):
        """"int" or "float" when t only matches numbers of that kind, else None."""
        while t[0] == "name" and t[1] in self.types:
            t = self.types[t[1]]
        if t[0] == "ctl":
            return self._numeric_kind(t[1])
        if t[0] == "range":
            return self._numeric_kind(t[1])
        if t[0] == "lit" and not isinstance(t[1], str):
            return "int" if _is_int(t[1]) else "float"
        if t[0] == "name":
            if t[1] in ("uint", "nint", "int"):
                return "int"
            if t[1] in ("float", "float16", "float32", "float64"):
                return "float"
        if t[0] == "choice":
            kinds = {self._numeric_kind(c) for c in t[1]}
            return kinds.pop() if len(kinds) == 1 else None
        return None

    def _match_name(self, name, v, path):
        if name in self.types:
            return self._match(self.types[name], v, path)
        if name not in _PRELUDE:
            raise CddlError(f"undefined rule {name}")
        ok = {
            "uint": lambda: _is_int(v) and v >= 0,
            "nint": lambda: _is_int(v) and v < 0,
            "int": lambda: _is_int(v),
            "float": lambda: isinstance(v, float),
            "float16": lambda: isinstance(v, float),
            "float32": lambda: isinstance(v, float),
            "float64": lambda: isinstance(v, float),
            "tstr": lambda: isinstance(v, str),
            "text": lambda: isinstance(v, str),
            "bstr": lambda: isinstance(v, bytes),
            "bytes": lambda: isinstance(v, bytes),
            "bool": lambda: isinstance(v, bool),
            "true": lambda: v is True,
            "false": lambda: v is False,
            "null": lambda: v is None,
            "nil": lambda: v is None,
            "any": lambda: True,
        }[name]()
        return [] if ok else f"{path}: expected {name}, got {type(v).__name__} {v!r}"

    def _flatten(self, group):
        out = []
        for e in group:
            lo, hi, kind, key, t = e
            if kind == "bare" and t[0] == "name" and t[1] in self.groups:
                if (lo, hi) != (1, 1):
                    raise CddlError("occurrence on a group reference is not supported")
                out.extend(self._flatten(self.groups[t[1]]))
            else:
                out.append(e)
        return out

    def _match_map(self, t, v, path):
        if not isinstance(v, dict):
            return f"{path}: expected a map, got {type(v).__name__}"
        label = t[2]
        remaining = dict(v)
        obs = []
        for lo, hi, kind, key, vt in self._flatten(t[1]):
            if kind == "member":
                if key in remaining:
                    r = self._match(vt, remaining.pop(key), f"{path}.{key}")
                    if isinstance(r, str):
                        return r
                    obs.extend(r)
                    count = 1
                else:
                    count = 0
                if lo == 0:
                    obs.append((label, key, count == 1))
            elif kind == "keyed":
                count = 0
                for k in sorted(remaining, key=str):
                    if isinstance(self._match(key, k, path), str):
                        continue
                    r = self._match(vt, remaining.pop(k), f"{path}.{k}")
                    if isinstance(r, str):
                        return r
                    obs.extend(r)
                    count += 1
            else:
                raise CddlError(f"{label}: a map entry needs a key")
            if not lo <= count <= hi:
                return f"{path}: {count} entries for {key!r}, expected {lo}..{hi}"
        if remaining:
            return f"{path}: unexpected keys {sorted(remaining)}"
        return obs

    def _match_array(self, t, v, path):
        if not isinstance(v, list):
            return f"{path}: expected an array, got {type(v).__name__}"
        i = 0
        obs = []
        for lo, hi, kind, key, vt in self._flatten(t[1]):
            if kind != "bare":
                raise CddlError("keys in arrays are not supported")
            count = 0
            while i < len(v) and count < hi:
                r = self._match(vt, v[i], f"{path}[{i}]")
                if isinstance(r, str):
                    if count < lo:
                        return r
                    break
                obs.extend(r)
                i += 1
                count += 1
            if count < lo:
                return f"{path}: {count} elements, expected at least {lo}"
        if i != len(v):
            return f"{path}: {len(v)} elements, only {i} match"
        return obs
