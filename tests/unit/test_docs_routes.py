"""The docs stay true: docs/API.md lists every public route of the app, and README.md links only inside
the repository, to files that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROUTE = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^`]*)` \|", re.M)


@pytest.fixture(scope="module")
def schema_routes():
    from vnstitch.api.app import create_app
    from vnstitch.api.settings import Settings

    app = create_app(Settings(store_url="memory://", reconcile=False, dev=True))
    routes = set()
    for path, operations in app.openapi()["paths"].items():  # include_in_schema=False routes are not in it
        if path.startswith("/v1/internal/"):
            continue  # replica-to-replica traffic, not public
        routes |= {(method.upper(), path) for method in operations}
    return routes


def documented_routes() -> set[tuple[str, str]]:
    text = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    return set(ROUTE.findall(text.split("## Every route", 1)[1]))


def test_api_md_lists_every_public_route(schema_routes):
    missing = sorted(schema_routes - documented_routes())
    assert not missing, f"docs/API.md's route table lacks {missing}"


def test_api_md_lists_no_route_the_app_lacks(schema_routes):
    stale = sorted(documented_routes() - schema_routes)
    assert not stale, f"docs/API.md lists routes the app does not serve: {stale}"


def test_api_md_names_the_predicted_graph():
    assert ("GET", "/v1/predictedgraph") in documented_routes()


LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
AUTOLINK = re.compile(r"<([a-z][a-z0-9+.-]*:[^>\s]+)>", re.I)


def _prose(markdown: str) -> str:
    """The text outside fenced code blocks and inline code (commands there are not links)."""
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", markdown)


def test_readme_links_stay_inside_the_repository():
    text = _prose((ROOT / "README.md").read_text(encoding="utf-8"))
    targets = LINK.findall(text) + REFERENCE.findall(text) + AUTOLINK.findall(text)
    assert targets, "README.md has no links at all?"
    for target in targets:
        assert "://" not in target and not target.startswith(("mailto:", "//")), f"README links outside: {target}"
        path = (ROOT / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), f"README link {target} leaves the repository"
        assert path.exists(), f"README link {target} points at nothing"
    assert not re.search(r"https?://", text), "README.md has a bare URL outside code"
