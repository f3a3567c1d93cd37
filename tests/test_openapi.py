"""The published OpenAPI document, and schemathesis fuzzing a live server against it."""
import subprocess
import sys
from pathlib import Path

import requests

from tests.helpers import ServerProcess, wait_job, write_config, write_samples


def test_openapi_document_describes_every_route(app):
    doc = app.test_client().get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    documented = {path.replace("{", "<").replace("}", ">") for path in doc["paths"]}
    routes = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routes - {"/openapi.json"} == documented
    assert doc["paths"]["/api/{model}/train"]["parameters"][0]["schema"]["enum"] == ["parima"]
    assert doc["components"]["schemas"]["TrainRequest"]["properties"]["force"]["type"] == "boolean"


def test_schemathesis_finds_no_server_error_and_no_non_json_error(tmp_path):
    config = write_config(tmp_path, autoTrain=False)
    write_samples(tmp_path / "data" / "samples.csv", 300, seed=1)
    server = ServerProcess(config)
    try:
        job = requests.post(f"{server.url}/api/parima/train", json={}, timeout=10).json()
        wait_job(lambda: requests.get(f"{server.url}/api/parima/jobs/{job['job_id']}", timeout=10).json())
        result = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", f"{server.url}/openapi.json",
             "--checks", "not_a_server_error,content_type_conformance", "--max-examples", "20", "--seed", "1",
             "--phases", "examples,coverage,fuzzing", "--workers", "2", "--request-timeout", "30", "--no-color"],
            capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-4000:]
        assert "passed" in result.stdout
        assert "Traceback" not in server.output()
    finally:
        assert server.stop() == 0
