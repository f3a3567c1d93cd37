"""E-mail notifications (``notifications.email``) through the standard library's ``smtplib``.

``Notifier`` queues each notification of the configured ``levels`` on an
``Outbox`` of its own (``delivery.py``): 4 attempts of at most
``timeoutSeconds`` (5 s, at most 6) each with backoff 0.5 s, 1 s, 2 s, so every
mail is tried at least 3 times within 30 s (CONTRACT §10) and a dead server
never blocks anything. The mail names the
model, the version, the outcome, the version serving now and the job.
"""
from __future__ import annotations

import os
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from .config import EmailConfig
from .delivery import DeliveryFailed

ATTEMPTS = 4
_OUTCOME = {"success": "succeeded", "warning": "needs a look", "error": "failed"}


class Mailer:
    """Send notifications as e-mail through one SMTP server."""

    attempts = ATTEMPTS

    def __init__(self, settings: EmailConfig):
        self.settings = settings
        self._timeout = settings.timeout_seconds
        # read once, at start (as the API key is), so a request never looks at the environment
        self._username = os.environ.get(settings.username_env) if settings.username_env else None
        self._password = os.environ.get(settings.password_env) if settings.password_env else None

    def wants(self, note: dict[str, Any]) -> bool:
        """Whether a notification's level is one the config mails."""
        return note["level"] in self.settings.levels

    def send(self, note: dict[str, Any]) -> None:
        """Send one notification as one mail (one attempt; ``DeliveryFailed`` says why it failed)."""
        settings = self.settings
        try:
            with smtplib.SMTP(settings.host, settings.port, timeout=self._timeout) as smtp:
                if settings.starttls:
                    smtp.starttls()
                if self._username is not None:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(message(note, settings.sender, settings.to))
        except smtplib.SMTPException as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None


def message(note: dict[str, Any], sender: str, to: tuple[str, ...]) -> EmailMessage:
    """The mail for one notification: the outcome in the subject; model, versions and job in the body."""
    details = note.get("details") or {}
    outcome = _OUTCOME.get(note["level"], note["level"])
    mail = EmailMessage()
    mail["Subject"] = f"[Refit] {note['model']}: {note['event_type']} ({outcome}) - {note['message']}"[:200]
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain="refit.local")
    lines = [
        note["message"],
        "",
        f"model:          {note['model']}",
        f"event:          {note['event_type']}",
        f"outcome:        {note['level']} ({outcome})",
        f"version:        {note.get('version') or '-'}",
        f"active version: {note.get('active_version') or 'none'}",
        f"job:            {details.get('job_id') or '-'}",
        f"time:           {note['timestamp']}",
    ]
    if details.get("reason"):
        lines.append(f"reason:         {details['reason']}")
    if details.get("error"):
        lines.append(f"error:          {details['error']}")
    mail.set_content("\n".join(lines) + "\n")
    return mail
