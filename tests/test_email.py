"""E-mail notifications (notifications.email) delivered to a real SMTP server (aiosmtpd) on a loopback port."""
import email
import email.policy
import json
import socket
import threading

import pytest
from aiosmtpd.controller import Controller

from backend import create_app
from backend.config import ConfigError, load_config
from backend.mailer import Mailer
from backend.notifications import Notifier
from tests.helpers import free_port, wait_job, write_config, write_samples


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self):
        return [email.message_from_bytes(e.content, policy=email.policy.default) for e in self.envelopes]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


def email_config(tmp_path, port, **email_settings):
    config = write_config(tmp_path)
    doc = json.loads(config.read_text())
    doc["notifications"] = {"email": {"host": "127.0.0.1", "port": port, "from": "refit@example.com",
                                      "to": ["ops@example.com", "ml@example.com"], **email_settings}}
    config.write_text(json.dumps(doc))
    return config


def train(client, body):
    job_id = client.post("/api/parima/train", json=body).json["job_id"]
    return wait_job(lambda: client.get(f"/api/parima/jobs/{job_id}").json)


def test_a_promotion_and_a_failure_each_arrive_by_mail(tmp_path, smtp):
    port, inbox = smtp
    config = email_config(tmp_path, port, levels=["success", "error"])
    write_samples(tmp_path / "data" / "samples.csv", 300, seed=1)
    (tmp_path / "data" / "empty.csv").write_text("frustumCoverage,decisionLOD\n")  # header only: fails cleanly
    app = create_app(config)
    client = app.test_client()
    promoted = train(client, {})
    failed = train(client, {"force": True, "csv_path": "empty.csv"})
    assert promoted["result"]["promoted"] and failed["status"] == "failed"
    assert app.extensions["refit"].notifier.drain(timeout=30)
    assert all(e.rcpt_tos == ["ops@example.com", "ml@example.com"] for e in inbox.envelopes)
    promotion, failure = inbox.messages()
    assert "parima" in promotion["Subject"] and "MODEL_PROMOTED" in promotion["Subject"]
    text = promotion.get_content()
    assert "model:          parima" in text and "version:        v1" in text and "outcome:        success" in text
    assert "active version: v1" in text
    assert "TRAINING_FAILED" in failure["Subject"] and failure["From"] == "refit@example.com"
    text = failure.get_content()  # a failure names the model, the version still serving and the job
    assert "model:          parima" in text and "active version: v1" in text and failed["job_id"] in text
    assert "outcome:        error" in text and "reason:         data_quality" in text


def test_only_the_configured_levels_are_mailed(tmp_path, smtp):
    port, inbox = smtp
    config = load_config(email_config(tmp_path, port))  # default levels: warning and error
    notifier = Notifier(tmp_path / "n.jsonl", mailer=Mailer(config.notifications.email))
    notifier.notify("success", "parima", "v2", "MODEL_PROMOTED", "Version v2 promoted", {})
    notifier.notify("warning", "parima", "v3", "MODEL_REJECTED", "Version v3 rejected", {"job_id": "abc"},
                    active_version="v2")
    assert notifier.drain(timeout=30)
    assert [m["Subject"].split(": ")[1].split(" ")[0] for m in inbox.messages()] == ["MODEL_REJECTED"]


class Silent:
    """A TCP server that accepts SMTP connections and never says a word (counts the attempts)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.attempts = 0
        self._held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.attempts += 1
            self._held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self._held:
            conn.close()


def test_an_smtp_server_that_never_answers_does_not_hold_up_training(tmp_path):
    silent = Silent()
    try:
        config = email_config(tmp_path, silent.port, levels=["success"], timeoutSeconds=0.5)
        write_samples(tmp_path / "data" / "samples.csv", 300, seed=1)
        app = create_app(config)
        job = train(app.test_client(), {})
        assert job["status"] == "completed"
        notifier = app.extensions["refit"].notifier
        assert notifier.pending() == 1  # the mail is still being retried: training did not wait for it
        assert notifier.drain(timeout=30)
        assert silent.attempts == 4  # at least 3 attempts, all within 30 s
    finally:
        silent.close()


@pytest.mark.parametrize("email_block, key", [
    ({"host": "h", "from": "refit@example.com", "to": ["not-an-address"]}, "notifications.email.to"),
    ({"host": "h", "from": "refit@example.com", "to": []}, "notifications.email.to"),
    ({"host": "h", "from": "refit@example.com", "to": ["a@b"], "levels": ["loud"]}, "notifications.email.levels"),
    ({"host": "h", "from": "refit@example.com", "to": ["a@b"], "timeoutSeconds": 20}, "notifications.email.timeoutSeconds"),
    ({"from": "refit@example.com", "to": ["a@b"]}, "notifications.email.host"),
    ({"host": "h", "from": "refit@example.com", "to": ["a@b"], "port": 25, "tls": True}, "notifications.email.tls"),
])
def test_a_bad_email_block_stops_the_start_naming_the_key(tmp_path, email_block, key):
    config = write_config(tmp_path)
    doc = json.loads(config.read_text())
    doc["notifications"] = {"email": email_block}
    config.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(config)
