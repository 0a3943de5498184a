"""Small evaluators for what the alarm-path contract tests follow end to end, since AWS cannot run here:

- ``iot_sql``: the subset of AWS IoT SQL (version 2016-03-23) the ingest module's rules use: ``SELECT *``,
  fields and dotted paths, ``expr AS name``, ``SELECT VALUE expr``, nested ``(SELECT ... FROM array)`` queries
  (one output element per array element) and the functions ``topic()``, ``topic(n)`` and ``timestamp()``.
  Semantics as the IoT SQL reference states them: an undefined value is left out of the output, ``topic(n)``
  counts levels from 1 and never sees a Basic Ingest prefix (``$aws/rules/<rule>/``).
- ``log_filter_matches``: CloudWatch Logs JSON filter patterns as the monitoring module writes them:
  ``{ ($.a.b = "x") && (($.c > 1) || ($.d = "y*")) }`` with ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``,
  a trailing ``*`` wildcard in strings, ``&&``, ``||`` and parentheses.

Anything outside these subsets raises ``Unsupported``, so a rule or a pattern this module cannot judge fails the
test that asked, rather than passing unexamined.
"""

from __future__ import annotations

import re
from typing import Any

BASIC_INGEST = re.compile(r"^\$aws/rules/[^/]+/")
UNDEFINED = object()


class Unsupported(Exception):
    pass


# ---------------------------------------------------------------------------------------------- IoT SQL
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'[^']*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<id>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)|(?P<p>[(),*]))"
)
_KEYWORDS = {"select", "value", "from", "as", "where"}


def _tokens(sql: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(sql.rstrip()):
        m = _TOKEN.match(sql, pos)
        if not m:
            raise Unsupported(f"cannot read IoT SQL at {sql[pos : pos + 30]!r}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "id" and text.lower() in _KEYWORDS:
            kind, text = "kw", text.lower()
        out.append((kind, text))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.t, self.i = tokens, 0

    def peek(self) -> tuple[str, str]:
        return self.t[self.i] if self.i < len(self.t) else ("end", "")

    def take(self, kind: str, text: str | None = None) -> str:
        k, v = self.peek()
        if k != kind or (text is not None and v != text):
            raise Unsupported(f"expected {text or kind}, found {v or 'the end'}")
        self.i += 1
        return v

    def query(self, top: bool) -> dict[str, Any]:
        self.take("kw", "select")
        q: dict[str, Any] = {"value": None, "items": []}
        if self.peek() == ("kw", "value"):
            self.take("kw", "value")
            q["value"] = self.expr()
        else:
            q["items"].append(self.item())
            while self.peek() == ("p", ","):
                self.take("p", ",")
                q["items"].append(self.item())
        self.take("kw", "from")
        k, v = self.peek()
        if top:
            q["from"] = self.take("str")[1:-1]
        else:
            q["from"] = self.take("id") if k == "id" else self.fail(v)
        if self.peek()[0] != "end" and self.peek() != ("p", ")"):
            raise Unsupported(f"clause {self.peek()[1]!r} is beyond what this evaluator reads")
        return q

    def fail(self, v: str) -> str:
        raise Unsupported(f"unexpected {v!r}")

    def item(self) -> tuple[str | None, Any]:
        if self.peek() == ("p", "*"):
            self.take("p", "*")
            return None, ("star",)
        e = self.expr()
        if self.peek() == ("kw", "as"):
            self.take("kw", "as")
            return self.take("id"), e
        if e[0] == "path":
            return e[1].split(".")[-1], e
        raise Unsupported("an expression other than a field needs AS <name>")

    def expr(self) -> tuple:
        k, v = self.peek()
        if k == "p" and v == "(":
            self.take("p", "(")
            inner = self.query(top=False)
            self.take("p", ")")
            return ("nested", inner)
        if k == "str":
            self.i += 1
            return ("lit", v[1:-1])
        if k == "num":
            self.i += 1
            return ("lit", float(v) if "." in v else int(v))
        if k == "id":
            self.i += 1
            if self.peek() == ("p", "("):
                self.take("p", "(")
                args = []
                while self.peek() != ("p", ")"):
                    args.append(self.expr())
                    if self.peek() == ("p", ","):
                        self.take("p", ",")
                self.take("p", ")")
                return ("call", v.lower(), args)
            return ("path", v)
        raise Unsupported(f"unexpected {v!r}")


def parse(sql: str) -> dict[str, Any]:
    p = _Parser(_tokens(sql))
    q = p.query(top=True)
    if p.peek()[0] != "end":
        raise Unsupported(f"trailing {p.peek()[1]!r}")
    return q


def _get(ctx: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(ctx, dict) or part not in ctx:
            return UNDEFINED
        ctx = ctx[part]
    return ctx


def _eval(e: tuple, ctx: Any, env: dict[str, Any]) -> Any:
    kind = e[0]
    if kind == "lit":
        return e[1]
    if kind == "path":
        return _get(ctx, e[1])
    if kind == "call":
        name, args = e[1], [_eval(a, ctx, env) for a in e[2]]
        if name == "topic":
            levels = env["topic"].split("/")
            if not args:
                return env["topic"]
            n = args[0]
            return levels[n - 1] if isinstance(n, int) and 1 <= n <= len(levels) else UNDEFINED
        if name == "timestamp":
            return env["now_ms"]
        raise Unsupported(f"function {name}() is beyond what this evaluator knows")
    if kind == "nested":
        q = e[1]
        arr = _get(ctx, q["from"])
        if not isinstance(arr, list):
            return UNDEFINED
        return [_select(q, el, env) for el in arr]
    raise Unsupported(str(e))


def _select(q: dict[str, Any], ctx: Any, env: dict[str, Any]) -> Any:
    if q["value"] is not None:
        return _eval(q["value"], ctx, env)
    out: dict[str, Any] = {}
    for name, e in q["items"]:
        if e == ("star",):
            out.update(ctx if isinstance(ctx, dict) else {})
            continue
        v = _eval(e, ctx, env)
        if v is not UNDEFINED:
            out[name] = v
    return out


def iot_sql(sql: str, payload: dict[str, Any], topic: str, now_ms: int = 1_760_000_000_000) -> Any:
    """What a rule hands its actions for ``payload`` published on ``topic`` (the rule's FROM is not checked
    here: the tests match topics with ``contracts.topic_matches``)."""
    env = {"topic": BASIC_INGEST.sub("", topic), "now_ms": now_ms}
    return _select(parse(sql), payload, env)


def rule_fields_read(sql: str) -> dict[str, set[str]]:
    """Field paths a rule reads, by scope: '' for the message, the array's name for a nested query's elements."""
    out: dict[str, set[str]] = {}

    def walk(e: tuple, scope: str) -> None:
        if e[0] == "path":
            out.setdefault(scope, set()).add(e[1])
        elif e[0] == "call":
            for a in e[2]:
                walk(a, scope)
        elif e[0] == "nested":
            q = e[1]
            out.setdefault(scope, set()).add(q["from"])
            query(q, q["from"])

    def query(q: dict[str, Any], scope: str) -> None:
        if q["value"] is not None:
            walk(q["value"], scope)
        for _, e in q["items"]:
            if e != ("star",):
                walk(e, scope)

    query(parse(sql), "")
    return out


# ---------------------------------------------------------------------------------------------- log filters
_FTOKEN = re.compile(
    r"\s*(?:(?P<sel>\$(?:\.[A-Za-z_]\w*)+)|(?P<op>&&|\|\||!=|<=|>=|=|<|>)|(?P<str>\"[^\"]*\")"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<p>[(){}]))"
)


def _ftokens(pattern: str) -> list[tuple[str, str]]:
    out, pos, s = [], 0, pattern.strip()
    while pos < len(s):
        m = _FTOKEN.match(s, pos)
        if not m:
            raise Unsupported(f"cannot read filter pattern at {s[pos : pos + 30]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def log_filter_matches(pattern: str, event: dict[str, Any]) -> bool:
    """Whether a CloudWatch Logs JSON filter pattern matches one (JSON) log event."""
    toks = _ftokens(pattern)
    if not toks or toks[0] != ("p", "{") or toks[-1] != ("p", "}"):
        raise Unsupported("only JSON filter patterns { ... } are read here")
    pos = 1

    def peek() -> tuple[str, str]:
        return toks[pos] if pos < len(toks) - 1 else ("end", "")

    def take() -> tuple[str, str]:
        nonlocal pos
        tok = peek()
        pos += 1
        return tok

    def disj() -> bool:
        v = conj()
        while peek() == ("op", "||"):
            take()
            v = conj() or v
        return v

    def conj() -> bool:
        v = atom()
        while peek() == ("op", "&&"):
            take()
            v = atom() and v
        return v

    def atom() -> bool:
        if peek() == ("p", "("):
            take()
            v = disj()
            if take() != ("p", ")"):
                raise Unsupported("unbalanced parentheses")
            return v
        kind, sel = take()
        if kind != "sel":
            raise Unsupported(f"expected a $.selector, found {sel!r}")
        _, op = take()
        vkind, raw = take()
        actual = _get(event, sel[2:])
        if vkind == "str":
            want = raw[1:-1]
            if op not in ("=", "!="):
                raise Unsupported(f"{op} on a string")
            hit = isinstance(actual, str) and (actual.startswith(want[:-1]) if want.endswith("*") else actual == want)
            return hit if op == "=" else (actual is not UNDEFINED and not hit)
        if vkind != "num":
            raise Unsupported(f"expected a value, found {raw!r}")
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return False
        want_n = float(raw)
        return {
            "=": actual == want_n,
            "!=": actual != want_n,
            "<": actual < want_n,
            "<=": actual <= want_n,
            ">": actual > want_n,
            ">=": actual >= want_n,
        }[op]

    result = disj()
    if peek()[0] != "end":
        raise Unsupported(f"trailing {peek()[1]!r} in filter pattern")
    return result
