"""The published OpenAPI document, and schemathesis fuzzing a live server against it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ServerProcess, train_over_http, write_config, write_samples


def test_openapi_document_describes_every_route(app):
    doc = app.test_client().get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    documented = {path.replace("{", "<").replace("}", ">") for path in doc["paths"]}
    # the console's HTML pages and their files (/dashboard, /docs) are for people, not part of the API
    routes = {rule.rule for rule in app.url_map.iter_rules()
              if rule.endpoint != "static" and rule.endpoint.split(".")[0] not in ("dashboard", "docs")}
    assert routes - {"/openapi.json"} == documented
    assert doc["paths"]["/api/{model}/train"]["parameters"][0]["schema"]["enum"] == ["parima"]
    assert doc["components"]["schemas"]["TrainRequest"]["properties"]["force"]["type"] == "boolean"


@pytest.mark.server
def test_schemathesis_finds_no_server_error_and_no_non_json_error(tmp_path):
    config = write_config(tmp_path, autoTrain=False)
    write_samples(tmp_path / "data" / "samples.csv", 300, seed=1)
    server = ServerProcess(config)
    try:
        train_over_http(server, {})
        result = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", f"{server.url}/openapi.json",
             "--checks", "not_a_server_error,content_type_conformance,response_schema_conformance",
             "--max-examples", "20", "--seed", "1",
             "--exclude-path", "/api/events",  # a stream never ends: it is tested in test_events.py
             "--phases", "examples,coverage,fuzzing", "--workers", "2", "--request-timeout", "30", "--no-color"],
            capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-4000:]
        assert "passed" in result.stdout
        assert "Traceback" not in server.output()
    finally:
        assert server.stop() == 0


def test_errors_the_http_server_raises_itself_are_json(tmp_path, servers):
    import socket

    server = servers(write_config(tmp_path, autoTrain=False))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /health?" + b"x" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414") and b"Content-Type: application/json" in head
    assert json.loads(body)["error"]["code"] == "uri_too_long"
