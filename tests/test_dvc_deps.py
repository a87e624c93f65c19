"""Every DVC stage depends on the package modules its command imports.

DVC reruns a stage when one of its `deps` changes; a module the stage's command imports but
dvc.yaml does not list would leave the stage's outputs stale after an edit (a change to
``VSSL.gaussian`` or the eval transform must rerun feature extraction). The imports are read
statically (every ``import`` statement anywhere in a module, including the lazy ones inside
functions), transitively from the command's module ``vssl/commands/<cmd>.py``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vssl"


def module_file(name: str) -> Path | None:
    """The file of module ``vssl.a.b`` (a package's ``__init__.py``), None if it does not exist."""
    rel = Path(*name.split("."))
    for cand in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def imported_modules(path: Path, name: str) -> set[str]:
    """The ``vssl.*`` modules ``path`` (module ``name``) imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            # `from vssl.x import y` may name a submodule y
            found.update(f"{mod}.{a.name}" for a in node.names)
    out = set()
    for m in found:
        if m == "vssl" or m.startswith("vssl."):
            # every parent package's __init__ runs too
            parts = m.split(".")
            out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in out if module_file(m) is not None}


def import_closure(start: str) -> set[Path]:
    """Files of every vssl module reachable from module ``start``."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is not None:
            todo.extend(imported_modules(path, name) - seen)
    return {module_file(m) for m in seen if module_file(m) is not None}  # type: ignore[misc]


def dvc_code_deps() -> dict[str, list[str]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {
        name: [d for d in st.get("deps", []) if isinstance(d, str) and d.startswith("vssl")]
        for name, st in stages.items()
    }


def stage_command_module(name: str) -> str:
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]
    m = re.search(r"-m vssl (\w+)", stage["cmd"])
    assert m, f"stage {name}: no `-m vssl <command>` in {stage['cmd']!r}"
    return f"vssl.commands.{m.group(1)}"


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def test_import_closure_follows_lazy_and_relative_imports(tmp_path: Path) -> None:
    # The reader itself: the extract command reaches the method classes (through checkpoint
    # loading, imported inside a function) and the losses they use.
    files = {p.relative_to(ROOT).as_posix() for p in import_closure("vssl.commands.extract")}
    assert "vssl/methods/vssl.py" in files
    assert "vssl/losses/cosine_nll.py" in files
    assert "vssl/augment/recipes.py" in files
    assert "vssl/report/figures.py" not in files


@pytest.mark.parametrize("stage", sorted(dvc_code_deps()))
def test_dvc_stage_depends_on_every_module_its_command_imports(stage: str) -> None:
    deps = dvc_code_deps()[stage]
    needed = import_closure(stage_command_module(stage))
    missing = sorted(p.relative_to(ROOT).as_posix() for p in needed if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} imports modules it does not depend on: {missing}"
    # and lists nothing that does not exist
    for d in deps:
        assert (ROOT / d).exists(), d
