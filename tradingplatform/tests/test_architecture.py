"""Which app may import which (docs/architecture.md): agents builds on risk and brokers, never the
reverse, the pure modules stay free of Django so they run without a database, and no module uses
another package's underscore names (a name a caller elsewhere relies on is public)."""
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


def _project_files() -> list[Path]:
    return sorted(path for path in ROOT.rglob("*.py")
                  if not path.relative_to(ROOT).parts[0].startswith((".", "staticfiles")))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private_uses(path: Path, packages: dict[str, str]) -> list[str]:
    """`alias._name` where the alias is an imported project module of another package (its folder).
    An app's tests may use its own modules' underscore names: they test them."""
    own = packages[_module_name(path)]
    own_app = own.split(".")[0] if "tests" in path.parts else None
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:  # `import a.b` binds `a`; `import a.b as c` binds `c` to `a.b`
                bound = alias.asname or alias.name.split(".")[0]
                aliases[bound] = alias.name if alias.asname else bound
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            aliases.update((alias.asname or alias.name, f"{node.module}.{alias.name}") for alias in node.names)
    uses = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
            continue
        chain, value = [], node.value
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        module = ".".join([aliases.get(value.id, ""), *chain]) if isinstance(value, ast.Name) else ""
        package = packages.get(module)
        if package is not None and package != own and package.split(".")[0] != own_app:
            uses.append(f"{path.relative_to(ROOT)}:{node.lineno} {module}.{node.attr}")
    return uses


def test_no_module_uses_another_packages_underscore_names() -> None:
    """A leading underscore is the package's own: a caller elsewhere needs a public name."""
    files = _project_files()
    packages = {_module_name(path): _module_name(path if path.name == "__init__.py" else path.parent / "__init__.py")
                for path in files}
    assert [use for path in files for use in _private_uses(path, packages)] == []
