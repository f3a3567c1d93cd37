from __future__ import annotations

import pytest

from backend import create_app
from tests.helpers import ServerProcess, write_config, write_samples


@pytest.fixture
def config_path(tmp_path):
    return write_config(tmp_path)


@pytest.fixture
def samples_csv(tmp_path):
    return tmp_path / "data" / "samples.csv"


@pytest.fixture
def app(config_path):
    return create_app(config_path)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def trained_client(config_path, samples_csv):
    """A client whose model already serves v1, trained on 300 demo rows."""
    from tests.helpers import wait_job

    write_samples(samples_csv, 300, seed=1)
    client = create_app(config_path).test_client()
    job_id = client.post("/api/parima/train", json={}).json["job_id"]
    job = wait_job(lambda: client.get(f"/api/parima/jobs/{job_id}").json)
    assert job["status"] == "completed" and job["result"]["promoted"], job
    return client


@pytest.fixture
def servers():
    """Start real server processes; every one still running is stopped after the test."""
    started = []

    def start(config, **kwargs):
        server = ServerProcess(config, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.stop()
