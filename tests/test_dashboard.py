"""The console's pages and Swagger UI as served (the browser tests drive them: test_dashboard_browser.py)."""
import re

import pytest

from backend import create_app

PAGES = ["/dashboard", "/dashboard/models/parima", "/dashboard/jobs", "/dashboard/history?model=parima",
         "/dashboard/experiments"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_links_to_the_others_by_their_names(client, path):
    page = client.get(path)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for link in ("/dashboard", "/dashboard/models/parima", "/dashboard/jobs", "/dashboard/history",
                 "/dashboard/experiments", "/docs/"):
        assert f'href="{link}"' in html


@pytest.mark.parametrize("path", [*PAGES, "/docs/"])
def test_every_script_style_and_icon_is_served_by_refit_itself(client, path):
    html = client.get(path).get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert assets and not [a for a in assets if "//" in a]  # no CDN, no other host
    for asset in assets:
        if asset.startswith("/dashboard/static/") or asset.startswith("/docs/"):
            assert client.get(asset).status_code == 200, asset


def test_swagger_ui_reads_our_document_and_sends_nothing_elsewhere(client):
    html = client.get("/docs/").get_data(as_text=True)
    assert '"url": "/openapi.json"' in html and '"validatorUrl": null' in html
    assert client.get("/docs").status_code == 308  # to /docs/


def test_a_page_of_an_unknown_model_is_the_json_404(client):
    missing = client.get("/dashboard/models/nope")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "model_not_found"


def test_health_says_whether_changes_need_the_api_key(config_path, monkeypatch):
    assert create_app(config_path).test_client().get("/health").json["auth_required"] is False
    monkeypatch.setenv("REFIT_API_KEY", "k")
    assert create_app(config_path).test_client().get("/health").json["auth_required"] is True
