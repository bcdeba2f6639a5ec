"""Package layout rules: the library never imports data_prep, experiments or benchmarks, and a
built wheel carries every subpackage and the demo's static files."""
import ast
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FORBIDDEN = ("data_prep", "experiments", "benchmarks", "tests")


def test_the_library_imports_no_script_package():
    offenders = []
    for path in (ROOT / "tfglow").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                          if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


def test_packaging_finds_every_subpackage_and_the_demo_page():
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set(find_packages(str(ROOT), **config["packages"]["find"]))
    on_disk = {str(p.parent.relative_to(ROOT)).replace(os.sep, ".")
               for p in (ROOT / "tfglow").rglob("__init__.py")}
    assert on_disk <= found and "data_prep" in found, on_disk - found
    static = config["package-data"]["tfglow.demo"]
    assert any(pathlib.Path(ROOT / "tfglow" / "demo").glob(static[0]))
