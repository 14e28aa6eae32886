"""One typed settings object: defaults < `llmos.toml`-free environment (`LLMOS_*`) < command-line flags."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
import json
from typing import TypeVar

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmos_chain.errors import ConfigError


class Settings(BaseSettings):
    """Settings shared by every command. Each field reads `LLMOS_<NAME>` from the environment."""

    model_config = SettingsConfigDict(env_prefix="LLMOS_", extra="ignore")

    rpc_url: str = "embedded"
    deployment: Path = Path("deployment.json")
    private_key: SecretStr | None = None
    rpc_timeout_s: float = 30.0
    keystore: Path = Path("~/.llmos/keystore")

    def account(self, dev_accounts: list[LocalAccount], index: int = 0) -> LocalAccount:
        """The configured key, else (on a dev chain only) the dev account at `index`."""
        if self.private_key is not None:
            try:
                return Account.from_key(self.private_key.get_secret_value())
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"LLMOS_PRIVATE_KEY is not a valid private key: {exc.__class__.__name__}") from None
        if dev_accounts:
            return dev_accounts[index]
        raise ConfigError("no signing key: set LLMOS_PRIVATE_KEY (hex) for this chain; dev accounts exist only on dev chains")


def load_settings(**overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]


M = TypeVar("M", bound=BaseModel)


def load_json_config(model: type[M], path: Path, what: str) -> M:
    """A daemon's JSON config file, validated; every problem is one ConfigError naming the file and field."""
    try:
        return model.model_validate(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path} is not JSON: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{what} {path}: {problems}") from None
