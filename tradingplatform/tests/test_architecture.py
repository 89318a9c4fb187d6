"""Which app may import which (docs/architecture.md): agents builds on risk and brokers, never the
reverse, and the pure modules stay free of Django so they run without a database."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("app", ["risk", "brokers", "tenants", "audit"])
def test_lower_apps_never_import_agents(app: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imported_modules(path) if m.split(".")[0] == "agents")
        for path in (ROOT / app).rglob("*.py")
        if "tests" not in path.parts
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}


PURE_MODULES = [
    "risk/limits.py", "risk/governor.py", "risk/greeks.py", "risk/book.py", "risk/sessions.py", "risk/working.py",
    "risk/smile.py", "risk/delta_models.py",
    *(f"agents/policy/{name}.py" for name in ("__init__", "model", "band", "hedge", "structures", "prices", "digest")),
    "agents/parameters.py", "agents/schedule.py",
    "brokers/domain.py", "brokers/products/__init__.py", "brokers/products/model.py",
    "brokers/products/calendar.py", "brokers/products/table.py", "brokers/contracts.py", "brokers/codec.py",
    "brokers/phillip/parsing.py", "brokers/phillip/transport.py", "brokers/phillip/broker.py",
    *(f"brokers/simulator/{name}.py"
      for name in ("__init__", "clock", "paths", "params", "market", "state", "account")),
]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_not_import_django(module: str) -> None:
    imported = _imported_modules(ROOT / module)
    assert not {m for m in imported if m.split(".")[0] in {"django", "rest_framework"}}
