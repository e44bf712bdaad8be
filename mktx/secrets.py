"""Secrets at rest: OAuth tokens are stored Fernet-encrypted and only decrypted to call X."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from mktx.settings import Settings


class SecretBox:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(settings.encryption_key.get_secret_value())

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            # Never echo the ciphertext: it is still a secret.
            raise ValueError("stored secret cannot be decrypted with MKTX_ENCRYPTION_KEY") from exc

    def __repr__(self) -> str:
        return "SecretBox(***)"
