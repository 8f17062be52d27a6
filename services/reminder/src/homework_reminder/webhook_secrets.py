"""Practices' webhook signing secrets, encrypted at rest with Fernet; key rotation and the plaintext migration.

Fernet (``cryptography``: AES-128-CBC with HMAC-SHA256, a timestamped token) rather than
hand-rolled AES-GCM: it is the well-kept high-level recipe for exactly this, and ``MultiFernet``
gives rotation for free: the first key of ``WEBHOOK_SECRET_KEYS`` encrypts, every key decrypts,
and ``rotate`` re-encrypts a token under the first key.

A webhook document stores ``secret_ciphertext``. Documents written before encryption have a
plaintext ``secret``: they are still read (so deliveries never stop during a rolling upgrade), and
``reseal`` encrypts them. ``reseal`` also re-encrypts every secret the first key cannot read (after a
rotation). It runs at each replica's start and as a command a Kubernetes Job can run::

    python -m homework_reminder.webhook_secrets   # reads the same settings as the service
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from homework_reminder.config import DEV_WEBHOOK_SECRET_KEY, ReminderSettings
from homework_reminder.store import Doc, Store

log = logging.getLogger(__name__)


class SecretUnreadable(Exception):
    """A stored secret that none of the configured keys decrypts (a key was removed too early)."""


class SecretBox:
    """Encrypts and decrypts webhook secrets with the configured keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is needed")
        self.primary = Fernet(keys[0])
        self.all = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: ReminderSettings) -> SecretBox:
        """The keys of ``WEBHOOK_SECRET_KEYS`` (the settings refuse it unset outside development and test)."""
        return cls(settings.webhook_secret_key_list() or [DEV_WEBHOOK_SECRET_KEY])

    def seal(self, secret: str) -> str:
        """The ciphertext of ``secret`` under the first key."""
        return self.primary.encrypt(secret.encode()).decode()

    def reveal(self, webhook: Doc) -> str:
        """The plaintext secret of a stored webhook (encrypted, or plaintext from before encryption)."""
        if "secret_ciphertext" not in webhook:
            return str(webhook["secret"])
        try:
            return self.all.decrypt(webhook["secret_ciphertext"].encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                f"the webhook secret of practice {webhook['_id']!r} is under an unknown key"
            ) from None

    def resealed(self, webhook: Doc) -> str | None:
        """The webhook's ciphertext under the first key, or None when it already is (nothing to write)."""
        if "secret_ciphertext" not in webhook:
            return self.seal(str(webhook["secret"]))
        token = webhook["secret_ciphertext"].encode()
        try:
            self.primary.decrypt(token)
            return None
        except InvalidToken:
            pass
        try:
            return self.all.rotate(token).decode()
        except InvalidToken:
            raise SecretUnreadable(
                f"the webhook secret of practice {webhook['_id']!r} is under an unknown key"
            ) from None


@dataclass
class ResealReport:
    """What one ``reseal`` did."""

    encrypted: int = 0
    """Plaintext secrets (from before encryption) now encrypted."""
    rotated: int = 0
    """Secrets re-encrypted under the first key."""
    unreadable: int = 0
    """Secrets no configured key decrypts: their deliveries fail until the key is put back."""


async def reseal(store: Store, box: SecretBox) -> ResealReport:
    """Encrypt every plaintext secret and re-encrypt every secret under an older key; safe to run concurrently."""
    report = ResealReport()
    async for webhook in store.all_webhooks():
        try:
            ciphertext = box.resealed(webhook)
        except SecretUnreadable as exc:
            report.unreadable += 1
            log.error("%s: put its key back in WEBHOOK_SECRET_KEYS", exc)
            continue
        if ciphertext is None:
            continue
        was_plaintext = "secret_ciphertext" not in webhook
        if await store.reseal_webhook_secret(webhook, ciphertext):
            if was_plaintext:
                report.encrypted += 1
            else:
                report.rotated += 1
    if report.encrypted or report.rotated or report.unreadable:
        log.info(
            "webhook secrets: %d encrypted, %d re-encrypted under the first key, %d unreadable",
            report.encrypted,
            report.rotated,
            report.unreadable,
        )
    return report


async def _main() -> int:
    from homework_shared.mongo import make_mongo_client
    from homework_shared.settings import load_settings

    settings = load_settings(ReminderSettings)
    mongo = make_mongo_client(settings)
    try:
        report = await reseal(Store(mongo[settings.mongodb_database]), SecretBox.from_settings(settings))
    finally:
        await mongo.close()
    print(f"encrypted={report.encrypted} rotated={report.rotated} unreadable={report.unreadable}")
    return 1 if report.unreadable else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(asyncio.run(_main()))
