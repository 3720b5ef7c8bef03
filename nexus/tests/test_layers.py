"""Each app keeps the same inner shape: reads in selectors, writes in services, and the
edges (API views, pages) reach data only through them. A model manager used in an
`api.py` or `views.py` fails here, with its file and line."""

import ast
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
APPS = ["nexus", "tenants", "billing", "jobs", "webhooks", "etl"]


def _edges() -> list[Path]:
    found = []
    for app in APPS:
        for name in ("api", "views"):
            module = ROOT / app / f"{name}.py"
            package = ROOT / app / name
            if module.exists():
                found.append(module)
            if package.is_dir():
                found.extend(sorted(package.rglob("*.py")))
    return found


def _manager_uses(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(root)}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in {"objects", "_default_manager", "_base_manager"}
    ]


def test_the_edges_of_every_app_are_found():
    names = {str(path.relative_to(ROOT)) for path in _edges()}
    assert {"jobs/api.py", "jobs/views.py", "etl/api.py", "billing/api.py", "billing/views.py"} <= names


def test_no_api_view_or_page_touches_a_model_manager():
    uses = [use for path in _edges() for use in _manager_uses(path)]
    assert uses == [], "read through a selector, write through a service: " + ", ".join(uses)


def test_the_check_finds_a_manager_in_an_edge(tmp_path):
    edge = tmp_path / "api.py"
    edge.write_text("def get(request):\n    return Job.objects.all()\n")
    assert _manager_uses(edge, root=tmp_path) == ["api.py:2"]
