"""One typed settings object: defaults < `llmos.toml`-free environment (`LLMOS_*`) < command-line flags."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
import json
from typing import Any, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmos_chain.errors import ConfigError


class Settings(BaseSettings):
    """Settings shared by every command. Each field reads `LLMOS_<NAME>` from the environment."""

    model_config = SettingsConfigDict(env_prefix="LLMOS_", extra="ignore")

    rpc_url: str = "embedded"
    deployment: Path = Path("deployment.json")
    private_key: SecretStr | None = None
    rpc_timeout_s: float = Field(default=30.0, gt=0)
    keystore: Path = Path("~/.llmos/keystore")

    def account(self, dev_accounts: list[LocalAccount], index: int = 0) -> LocalAccount:
        """The configured key, else (on a dev chain only) the dev account at `index`."""
        if self.private_key is not None:
            try:
                return Account.from_key(self.private_key.get_secret_value())
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"LLMOS_PRIVATE_KEY is not a valid private key: {exc.__class__.__name__}") from None
        if dev_accounts:
            if not 0 <= index < len(dev_accounts):
                raise ConfigError(f"no dev account {index} (--dev-account): this dev chain has accounts 0 to {len(dev_accounts) - 1}")
            return dev_accounts[index]
        raise ConfigError("no signing key: set LLMOS_PRIVATE_KEY (hex) for this chain; dev accounts exist only on dev chains")


def load_settings(**overrides: object) -> Settings:
    """The settings, from the environment and `overrides` (flags); a bad value is one ConfigError naming its variable."""
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError("; ".join(_setting_problem(e, values) for e in exc.errors())) from None


def _setting_problem(error: Any, overrides: dict[str, object]) -> str:
    """One bad setting: the flag's value or the `LLMOS_*` variable it came from, what is wrong, and what was given."""
    field = str(error["loc"][0]) if error.get("loc") else "?"
    source = f"setting {field}" if field in overrides else f"LLMOS_{field.upper()}"
    given = error.get("input")
    shown = "" if field == "private_key" or isinstance(given, dict) else f", got {given!r}"  # never echo a key
    return f"{source}: {error['msg']}{shown}"


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
