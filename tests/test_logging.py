"""No `extra=` key of a log call may name a `LogRecord` attribute.

`Logger.makeRecord` raises KeyError for such a key ("Attempt to overwrite 'created' in
LogRecord", issue 8), but only when the level lets the call build a record, so a run below the
call's level never sees it. The tests run at INFO (tests/conftest.py) so that INFO+ calls execute;
this check reads every call's keys from the source instead, whatever its level or whether a test
reaches it."""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from mktx.logs import JsonFormatter

REPO = Path(__file__).resolve().parent.parent
PRODUCT = (
    "api",
    "services",
    "workflows",
    "activities",
    "integrations",
    "sandbox",
    "models",
    "mktx",
    "worker.py",
    "bench",
)

# makeRecord refuses these two besides the record's own attributes; taskName joins the record's
# attributes in Python 3.12, so a key that works on 3.11 would fail there.
RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "log"}


def _product_files() -> Iterator[Path]:
    for name in PRODUCT:
        path = REPO / name
        if path.is_file():
            yield path
        else:
            yield from sorted(p for p in path.rglob("*.py") if ".venv" not in p.parts)


class _Keys:
    """The string keys an `extra=` value will hold, where the source says them: dict literals,
    `dict(...)` calls, `**` spreads of either, names assigned one of those in the same function
    (or module), and `model.model_dump()` of a model class defined in the same module."""

    def __init__(self, tree: ast.Module) -> None:
        self.classes = {
            node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
        }

    def of(self, node: ast.expr, scope: ast.AST) -> list[tuple[str, int]] | None:
        """(key, line) pairs, or None when the keys cannot be known from the source."""
        if isinstance(node, ast.Dict):
            keys: list[tuple[str, int]] = []
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:  # {**spread}
                    spread = self.of(value, scope)
                    keys.extend(spread or [])
                elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                    keys.append((key.value, key.lineno))
            return keys
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "dict":
                keys = [(kw.arg, kw.value.lineno) for kw in node.keywords if kw.arg is not None]
                for arg in [*node.args, *(kw.value for kw in node.keywords if kw.arg is None)]:
                    keys.extend(self.of(arg, scope) or [])
                return keys
            if (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "model_dump"
                and isinstance(node.func.value, ast.Name)
            ):
                return self._model_fields(node.func.value.id, scope, node.lineno)
            return None
        if isinstance(node, ast.Name):
            value = self._assigned(node.id, scope)
            return None if value is None else self.of(value, scope)
        return None

    def _assigned(self, name: str, scope: ast.AST) -> ast.expr | None:
        """The value of the one plain assignment to `name` in `scope`, if there is exactly one."""
        values = [
            node.value
            for node in ast.walk(scope)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
        ]
        return values[0] if len(values) == 1 else None

    def _model_fields(self, name: str, scope: ast.AST, line: int) -> list[tuple[str, int]] | None:
        cls: str | None = None
        value = self._assigned(name, scope)
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            cls = value.func.id
        elif isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
            args = scope.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                if arg.arg == name and isinstance(arg.annotation, ast.Name):
                    cls = arg.annotation.id
        definition = self.classes.get(cls or "")
        if definition is None:
            return None
        return [
            (stmt.target.id, line)
            for stmt in definition.body
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
        ]


def _extra_keys(path: Path) -> Iterator[tuple[int, list[tuple[str, int]] | None]]:
    """(line of the call, its extra keys or None) for every log call with `extra=` in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    resolve = _Keys(tree)
    scopes: list[ast.AST] = [tree]

    def visit(node: ast.AST) -> Iterator[tuple[int, list[tuple[str, int]] | None]]:
        is_scope = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        if is_scope:
            scopes.append(node)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOG_METHODS
        ):
            for kw in node.keywords:
                if kw.arg == "extra":
                    yield node.lineno, resolve.of(kw.value, scopes[-1])
        for child in ast.iter_child_nodes(node):
            yield from visit(child)
        if is_scope:
            scopes.pop()

    yield from visit(tree)


def _scan() -> tuple[list[str], int, list[str]]:
    """Offenders as "file:line key", how many calls were checked, and the calls skipped."""
    offenders: list[str] = []
    checked = 0
    skipped: list[str] = []
    for path in _product_files():
        where = path.relative_to(REPO)
        for line, keys in _extra_keys(path):
            if keys is None:
                skipped.append(f"{where}:{line}")
                continue
            checked += 1
            offenders.extend(f"{where}:{at} {key!r}" for key, at in keys if key in RESERVED)
    return offenders, checked, skipped


def test_no_extra_key_overwrites_a_log_record_attribute() -> None:
    offenders, checked, skipped = _scan()
    assert not offenders, (
        "these `extra=` keys are LogRecord attributes; logging raises KeyError on them "
        "(rename the key, e.g. created -> contacts_created):\n" + "\n".join(offenders)
    )
    # The check must have seen the calls it is about, or it would pass by reading nothing.
    assert checked > 50, (checked, skipped)


def test_the_check_catches_a_reserved_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import logging\n"
        "logger = logging.getLogger(__name__)\n"
        "def f(n):\n"
        "    details = {'n': n, **{'module': 'm'}}\n"
        "    logger.info('a', extra={'created': n})\n"
        "    logger.warning('b', extra=details)\n"
        "    logger.log(20, 'c', extra=dict(msg='x'))\n"
        "    logger.info('d', extra={'contacts_created': n})\n"
    )
    found = {key for _, keys in _extra_keys(bad) for key, _ in keys or [] if key in RESERVED}
    assert found == {"created", "module", "msg"}


def test_the_json_formatter_writes_odd_extras_instead_of_failing() -> None:
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    record = logging.getLogger("t").makeRecord(
        "t",
        logging.INFO,
        __file__,
        1,
        "odd.extras",
        (),
        None,
        extra={
            "cyclic": cyclic,
            "keys": {(1, 2): "tuple key"},
            "odd": Unprintable(),
            7: "not a string key",
            "n": 1,
        },
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["event"] == "odd.extras" and entry["n"] == 1
    assert {"cyclic", "keys", "odd", "7"} <= entry.keys()
