"""Webhook secrets at rest: encrypted under the first key, readable under every configured key, rotated on reseal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.fernet import Fernet

from homework_reminder.config import DEV_WEBHOOK_SECRET_KEY, ReminderSettings
from homework_reminder.webhook_secrets import SecretBox, SecretUnreadable

UNREACHABLE = {"kafka_bootstrap_servers": "127.0.0.1:9", "mongodb_uri": "mongodb://127.0.0.1:9/"}
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
SECRET = "a-practice-secret-of-some-length"


def stored(box: SecretBox) -> dict[str, Any]:
    return {"_id": "p1", "secret_ciphertext": box.seal(SECRET), "updated_at": datetime(2026, 5, 1, tzinfo=UTC)}


def test_a_secret_is_stored_encrypted_and_revealed_only_with_a_key() -> None:
    box = SecretBox([OLD])
    doc = stored(box)
    assert SECRET not in doc["secret_ciphertext"]
    assert box.reveal(doc) == SECRET
    with pytest.raises(SecretUnreadable, match="unknown key"):
        SecretBox([NEW]).reveal(doc)


def test_after_a_rotation_old_key_secrets_still_work_and_a_reseal_moves_them_to_the_new_key() -> None:
    doc = stored(SecretBox([OLD]))
    rotated = SecretBox([NEW, OLD])
    assert rotated.reveal(doc) == SECRET
    resealed = rotated.resealed(doc)
    assert resealed is not None
    moved = {**doc, "secret_ciphertext": resealed}
    assert SecretBox([NEW]).reveal(moved) == SECRET  # the old key can now be removed
    assert rotated.resealed(moved) is None  # already under the first key: nothing to write


def test_a_plaintext_secret_from_before_encryption_is_read_and_resealed() -> None:
    legacy = {"_id": "p1", "secret": SECRET, "updated_at": datetime(2026, 5, 1, tzinfo=UTC)}
    box = SecretBox([NEW])
    assert box.reveal(legacy) == SECRET
    ciphertext = box.resealed(legacy)
    assert ciphertext is not None
    assert box.reveal({"_id": "p1", "secret_ciphertext": ciphertext}) == SECRET


def test_a_secret_under_a_removed_key_is_reported_not_silently_rewritten() -> None:
    with pytest.raises(SecretUnreadable):
        SecretBox([NEW]).resealed(stored(SecretBox([OLD])))


def test_the_key_setting_takes_a_comma_separated_list_and_refuses_bad_or_development_keys() -> None:
    settings = ReminderSettings(environment="development", webhook_secret_keys=f" {NEW}, {OLD} ", **UNREACHABLE)
    assert settings.webhook_secret_key_list() == [NEW, OLD]
    with pytest.raises(ValueError, match="key 2 is not a Fernet key"):
        ReminderSettings(environment="development", webhook_secret_keys=f"{NEW},not-a-key", **UNREACHABLE)
    assert SecretBox.from_settings(ReminderSettings(environment="development", **UNREACHABLE)).reveal(
        stored(SecretBox([DEV_WEBHOOK_SECRET_KEY]))
    )


def test_production_needs_its_own_webhook_secret_key() -> None:
    production: dict[str, Any] = {
        "environment": "production",
        "jwt_secret": "a-production-jwt-secret-of-40-characters!",
        "jwt_allow_hs256_in_production": True,
        "allow_insecure_transport": True,  # the local broker and server speak plain text
        **UNREACHABLE,
    }
    with pytest.raises(ValueError, match="WEBHOOK_SECRET_KEYS: set at least one"):
        ReminderSettings(**production)
    with pytest.raises(ValueError, match="WEBHOOK_SECRET_KEYS: the development key is refused"):
        ReminderSettings(**production, webhook_secret_keys=DEV_WEBHOOK_SECRET_KEY)
    assert ReminderSettings(**production, webhook_secret_keys=NEW).webhook_secret_key_list() == [NEW]
