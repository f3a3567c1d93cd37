from __future__ import annotations

import shutil

import pytest

from backend import create_app, shutdown
from tests.helpers import ServerProcess, wait_job, write_config, write_samples


def pytest_collection_modifyitems(items):
    """Mark every test that starts real servers through the ``servers`` fixture as ``server``."""
    for item in items:
        if "servers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)


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


@pytest.fixture(scope="session")
def trained_folder(tmp_path_factory):
    """A config folder whose model serves v1, trained once per session on 300 demo rows.

    Tests never change it: ``trained_client`` works on a copy.
    """
    folder = tmp_path_factory.mktemp("trained")
    config = write_config(folder)
    write_samples(folder / "data" / "samples.csv", 300, seed=1)
    app = create_app(config)
    client = app.test_client()
    job_id = client.post("/api/parima/train", json={}).json["job_id"]
    job = wait_job(lambda: client.get(f"/api/parima/jobs/{job_id}").json)
    assert job["status"] == "completed" and job["result"]["promoted"], job
    shutdown(app)  # every record and notification written before the folder is copied
    return folder


@pytest.fixture
def trained_client(trained_folder, config_path, tmp_path):
    """A client whose model already serves v1, trained on 300 demo rows (a copy of ``trained_folder``).

    The config's paths are relative, so the copy is a complete, independent installation; only the
    history's old events name the session folder in their details.
    """
    for part in ("data", "ml_models"):
        shutil.copytree(trained_folder / part, tmp_path / part, dirs_exist_ok=True)
    shutil.copy2(trained_folder / "config.json", config_path)
    return create_app(config_path).test_client()


@pytest.fixture
def trained_config(trained_folder, tmp_path):
    """A config in tmp_path whose model already serves v1 (a copy of ``trained_folder``), for real server processes."""
    for part in ("data", "ml_models"):
        shutil.copytree(trained_folder / part, tmp_path / part, dirs_exist_ok=True)
    shutil.copy2(trained_folder / "config.json", tmp_path / "config.json")
    return tmp_path / "config.json"


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
