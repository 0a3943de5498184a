"""Readers for the contract tests: Redshift views (sqlglot), IoT rule SQL, IoT policies, MQTT topic filters."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from agent.uplink.envelope import schema_path

# ---------------------------------------------------------------------------------------------- JSON Schemas


def load_schema(kind: str) -> dict:
    return json.loads(schema_path(kind).read_text())


def json_types(prop: dict) -> set[str]:
    if "const" in prop:
        return {type(prop["const"]).__name__}
    if "enum" in prop:
        return {"string"} if all(isinstance(v, str) for v in prop["enum"]) else {"number"}
    t = prop.get("type", "object")
    return ({t} if isinstance(t, str) else set(t)) - {"null"}


def _deref(schema: dict, prop: dict) -> dict:
    while "$ref" in prop:
        ref = prop["$ref"]
        assert ref.startswith("#/"), ref
        node = schema
        for part in ref[2:].split("/"):
            node = node[part]
        prop = {**node, **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop


def row_fields(kind: str) -> dict[str, dict]:
    """Fields of one warehouse row of a message kind: the item schema of the message's array."""
    s = load_schema(kind)
    if kind == "telemetry.v2":
        # A compact row decodes to the reading fields named in 'fields' (the widest choice: rows from a cycler's
        # file carry two more); their types are those of a v1 record.
        names = max(s["properties"]["fields"]["enum"], key=len)
        v1 = row_fields("telemetry.v1")
        missing = set(names) - set(v1)
        assert not missing, f"telemetry.v2 fields {missing} have no type in telemetry.v1"
        return {n: v1[n] for n in names}
    array = {"telemetry.v1": "records", "cycles.v1": "cycles", "events.v1": "events"}[kind]
    return {k: _deref(s, p) for k, p in s["properties"][array]["items"]["properties"].items()}


# ---------------------------------------------------------------------------------------------- Redshift DDL
INTEGER = {exp.DataType.Type.BIGINT, exp.DataType.Type.INT, exp.DataType.Type.SMALLINT}
FLOATING = {exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT, exp.DataType.Type.DECIMAL}
TEXT = {exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR, exp.DataType.Type.TEXT, exp.DataType.Type.NVARCHAR}
TIME = {exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.DATE}


@dataclass
class Column:
    name: str
    type: exp.DataType | None  # None: could not tell
    expr: exp.Expression


@dataclass
class View:
    name: str
    selects: list[exp.Select]  # one per UNION branch
    columns: dict[str, Column] = field(default_factory=dict)


def parse_statements(statements: list[str]) -> list[exp.Expression]:
    out = []
    for s in statements:
        parsed = sqlglot.parse_one(s, read="redshift")
        assert parsed is not None, f"sqlglot could not parse:\n{s[:400]}"
        out.append(parsed)
    return out


def views(statements: list[str]) -> dict[str, View]:
    """CREATE [MATERIALIZED] VIEW name AS query -> View, by unqualified lower-case name."""
    found: dict[str, View] = {}
    for e in parse_statements(statements):
        if isinstance(e, exp.Create) and (e.args.get("kind") or "").upper() == "VIEW":
            q = e.expression
            selects = [q] if isinstance(q, exp.Select) else list(_union_selects(q))
            found[e.this.name.lower()] = View(e.this.name.lower(), selects)
    for v in found.values():
        for sel in v.selects[:1]:
            for p in sel.expressions:
                v.columns[p.alias_or_name.lower()] = Column(p.alias_or_name.lower(), None, p)
    for v in found.values():
        for col in v.columns.values():
            col.type = _resolve(
                col.expr.unalias() if isinstance(col.expr, exp.Alias) else col.expr, v.selects[0], found, depth=0
            )
    return found


def _union_selects(q: exp.Expression):
    if isinstance(q, exp.Union):
        yield from _union_selects(q.left)
        yield from _union_selects(q.right)
    else:
        yield q


def branch_types(view: View, found: dict[str, View]) -> list[dict[str, exp.DataType | None]]:
    """Column types of every UNION branch (each must carry the contract on its own)."""
    out = []
    for sel in view.selects:
        out.append(
            {
                p.alias_or_name.lower(): _resolve(p.unalias() if isinstance(p, exp.Alias) else p, sel, found, 0)
                for p in sel.expressions
            }
        )
    return out


def _dtype(t: exp.DataType.Type) -> exp.DataType:
    return exp.DataType(this=t)


def _resolve(e: exp.Expression, scope: exp.Select, found: dict[str, View], depth: int) -> exp.DataType | None:
    if depth > 12:
        return None
    if isinstance(e, exp.Cast):
        return e.to
    if isinstance(e, exp.Paren):
        return _resolve(e.this, scope, found, depth + 1)
    if isinstance(e, exp.Count):
        return _dtype(exp.DataType.Type.BIGINT)
    if isinstance(e, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
        types = [_resolve(x, scope, found, depth + 1) for x in (e.this, e.expression)]
        kinds = {t.this for t in types if t is not None}
        if None in types or not kinds:
            return None
        if kinds & TIME:
            return _dtype(exp.DataType.Type.TIMESTAMP)
        if kinds & FLOATING or isinstance(e, exp.Div):
            return _dtype(exp.DataType.Type.DOUBLE)
        if kinds <= INTEGER:
            return _dtype(exp.DataType.Type.BIGINT)
        return None
    if isinstance(e, exp.Interval):
        return _dtype(exp.DataType.Type.INTERVAL)
    if isinstance(e, exp.Literal):
        return _dtype(
            exp.DataType.Type.VARCHAR
            if e.is_string
            else exp.DataType.Type.DOUBLE
            if "." in e.this
            else exp.DataType.Type.BIGINT
        )
    if isinstance(e, exp.Column):
        return _resolve_column(e, scope, found, depth)
    return None


def _resolve_column(col: exp.Column, scope: exp.Select, found: dict[str, View], depth: int) -> exp.DataType | None:
    """A plain column: find it in the FROM/JOIN sources of its SELECT (views or subqueries)."""
    sources = []
    from_ = scope.args.get("from_") or scope.args.get("from")
    if from_ is not None:
        sources.append(from_.this)
    sources += [j.this for j in scope.args.get("joins") or []]
    # PartiQL navigation: "l.payload.events AS e" unnests a SUPER array (sqlglot reads it as UNNEST with the alias
    # as a column); e, e.x and the AT index alias come out of SUPER.
    navigated: set[str] = set()
    for src in sources:
        if isinstance(src, exp.Unnest):
            alias = src.args.get("alias")
            if alias is not None:
                navigated |= {i.name.lower() for i in alias.columns} | ({alias.name.lower()} if alias.name else set())
    if (col.table and col.table.lower() in navigated) or (not col.table and col.name.lower() in navigated):
        return _dtype(exp.DataType.Type.SUPER)
    for src in sources:
        alias = src.alias_or_name.lower() if hasattr(src, "alias_or_name") else ""
        if col.table and col.table.lower() != alias:
            continue
        if isinstance(src, exp.Subquery):
            inner = src.this
            for p in inner.expressions:
                if p.alias_or_name.lower() == col.name.lower():
                    return _resolve(p.unalias() if isinstance(p, exp.Alias) else p, inner, found, depth + 1)
        elif isinstance(src, exp.Table) and src.name.lower() in found:
            c = found[src.name.lower()].columns.get(col.name.lower())
            if c is not None:
                if c.type is None:
                    c.type = _resolve(
                        c.expr.unalias() if isinstance(c.expr, exp.Alias) else c.expr,
                        found[src.name.lower()].selects[0],
                        found,
                        depth + 1,
                    )
                return c.type
    return None


def compatible(json_prop: dict, dt: exp.DataType | None) -> str | None:
    """None if a column of type dt can hold every value of the JSON Schema property, else why not."""
    if dt is None:
        return "type unknown (give the column an explicit CAST)"
    kinds = json_types(json_prop)
    t = dt.this
    if kinds <= {"integer", "int"}:
        if t not in INTEGER:
            return f"integer field in a {t.name} column"
        return None
    if kinds <= {"number", "integer", "float", "int"}:
        return None if t in FLOATING else f"number field in a {t.name} column"
    if kinds <= {"string", "str"}:
        if t not in TEXT:
            return f"string field in a {t.name} column"
        size = dt.expressions[0].this.this if dt.expressions else None
        limit = json_prop.get("maxLength") or max((len(v) for v in json_prop.get("enum", [])), default=None)
        if limit and size and int(size) < int(limit):
            return f"maxLength {limit} in VARCHAR({size})"
        return None
    if kinds & {"object", "array"}:
        return None if t == exp.DataType.Type.SUPER else f"{'/'.join(sorted(kinds))} field in a {t.name} column"
    return f"no rule for JSON type {kinds}"


def brackets(e: exp.Expression) -> list[tuple[str, int]]:
    """(array name, constant subscript) of every x[k] inside e, e.g. ('x', 3), ('scale', 3)."""
    out = []
    for b in e.find_all(exp.Bracket):
        idx = b.expressions[0]
        assert isinstance(idx, exp.Literal) and not idx.is_string, f"non-constant subscript {b.sql()}"
        out.append((b.this.name, int(idx.this)))
    return out


def bitmasks(e: exp.Expression) -> set[int]:
    return {int(b.expression.this) for b in e.find_all(exp.BitwiseAnd) if isinstance(b.expression, exp.Literal)}


def window_partitions(view: View) -> list[set[str]]:
    return [
        {c.name.lower() for c in w.args.get("partition_by") or []}
        for sel in view.selects
        for w in sel.find_all(exp.Window)
    ]


# ---------------------------------------------------------------------------------------------- IoT SQL
IOT_KEYWORDS = {
    "select",
    "value",
    "from",
    "where",
    "as",
    "and",
    "or",
    "not",
    "case",
    "when",
    "then",
    "else",
    "end",
    "is",
    "null",
    "true",
    "false",
    "in",
    "like",
    "set",
}


def rule_from(sql: str) -> str:
    m = re.search(r"\bFROM\s+'([^']+)'", sql, re.IGNORECASE)
    assert m, f"rule SQL without a FROM topic filter: {sql}"
    return m.group(1)


def rule_fields(sql: str) -> set[str]:
    """Top-level message fields a rule's SQL reads (function names and AS aliases are not fields)."""
    s = re.sub(r"'[^']*'", "''", sql)
    out = set()
    for m in re.finditer(r"(?<![\w.$])([A-Za-z_][\w]*)((?:\.[A-Za-z_]\w*)*)\s*(\()?", s):
        word = m.group(1)
        if m.group(3) or word.lower() in IOT_KEYWORDS:
            continue
        before = s[: m.start()].rstrip()
        if re.search(r"\bAS$", before, re.IGNORECASE):
            continue
        out.add(word)
    return out


def template_fields(template: str) -> set[str]:
    """Message fields used inside ${...} substitution templates of a rule action."""
    out = set()
    for inner in re.findall(r"\$\{([^}]*)\}", template):
        out |= rule_fields(f"SELECT {inner} FROM 't'")
    return out


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT topic filter matching (+ one level, # the rest)."""
    f, t = filter_.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


# ---------------------------------------------------------------------------------------------- IoT policy
THING_VAR = "${iot:Connection.Thing.ThingName}"


def _glob(pattern: str) -> re.Pattern:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z")


def policy_allows(policy: dict, action: str, resource: str, thing: str, attached: bool = True) -> bool:
    """Evaluate an IoT policy for a connection of ``thing`` (Allow statements, Bool IsAttached conditions)."""
    allowed = False
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if not any(_glob(a).match(action) for a in actions):
            continue
        cond = st.get("Condition", {})
        unknown = set(cond) - {"Bool"}
        assert not unknown, f"policy condition operators this evaluator does not know: {unknown}"
        if cond.get("Bool", {}).get("iot:Connection.Thing.IsAttached") == "true" and not attached:
            continue
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        hit = any(_glob(r.replace(THING_VAR, thing)).match(resource) for r in resources)
        if hit and st["Effect"] == "Deny":
            return False
        allowed |= hit and st["Effect"] == "Allow"
    return allowed
