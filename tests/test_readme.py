"""What the README tells wallet users is the contracts' own: the error table, the state numbers, the EIP-712 type,
the dev mnemonic and the signatures of the `cast` examples are checked against the ABI and the code."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

from eth_utils import keccak

from llmos_chain.attestation import ATTESTATION_TYPE, DOMAIN_NAME, DOMAIN_VERSION
from llmos_chain.chain.connect import ANVIL_DEV_KEYS
from llmos_chain.chain.contracts import abi
from llmos_chain.chain.market import JobState

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_the_error_table_is_the_abis() -> None:
    tables = runpy.run_path(str(REPO / "scripts" / "readme_tables.py"))
    begin, end = tables["ERRORS_BEGIN"], tables["ERRORS_END"]
    assert README.count(begin) == 1 and README.count(end) == 1, "the README's error table lost its markers"
    in_readme = README.split(begin, 1)[1].split(end, 1)[0].strip()
    assert in_readme == tables["error_table_markdown"](), "README error table is stale: python scripts/readme_tables.py"
    # each row's selector is the keccak of its signature: what `cast` computes from revert data
    rows = re.findall(r"^\| `(0x[0-9a-f]{8})` \| `([^`]+)` \|$", in_readme, re.M)
    assert len(rows) > 50 and all(keccak(text=sig)[:4].hex() == sel[2:] for sel, sig in rows)
    assert ("0x" + keccak(text="JobNothingToWithdraw(address,address)")[:4].hex(), "JobNothingToWithdraw(address,address)") in rows


def test_the_state_table_numbers_the_abis_enum() -> None:
    source = (REPO / "contracts" / "interfaces" / "IJobMarket.sol").read_text()
    enum = re.search(r"enum JobState \{(.*?)\}", source, re.S)
    assert enum is not None
    names = re.findall(r"^\s*(\w+)\s*,?\s*//", enum.group(1), re.M)
    rows = re.findall(r"^\| (\d+) \| (\w+) \|", README.split("### Job states", 1)[1].split("###", 1)[0], re.M)
    assert [(int(n), name) for n, name in rows] == list(enumerate(names))
    assert [name.upper() for name in names] == [s.name.replace("_", "") for s in JobState]


def test_the_eip712_domain_and_type_are_the_signers() -> None:
    type_string = "Attestation(" + ",".join(f"{f['type']} {f['name']}" for f in ATTESTATION_TYPE) + ")"
    in_readme = re.search(r"```\n(Attestation\(.*?\))\n```", README, re.S)
    assert in_readme is not None and " ".join(in_readme.group(1).split()).replace(", ", ",") == type_string
    assert f'{{name: "{DOMAIN_NAME}", version: "{DOMAIN_VERSION}", chainId, verifyingContract' in README


def test_the_dev_mnemonic_derives_the_dev_accounts() -> None:
    from eth_account import Account

    mnemonic = re.search(r"mnemonic\s+`([a-z ]+)`", README)
    assert mnemonic is not None
    Account.enable_unaudited_hdwallet_features()
    for index in (0, 3):
        derived = Account.from_mnemonic(mnemonic.group(1), account_path=f"m/44'/60'/0'/0/{index}")
        assert derived.key.hex().removeprefix("0x") == ANVIL_DEV_KEYS[index].removeprefix("0x")
    assert f"KEY={ANVIL_DEV_KEYS[3]}" in README


def _abi_type(param: dict) -> str:
    if param["type"].startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + param["type"][5:]
    return str(param["type"])


def test_every_cast_example_calls_a_real_function() -> None:
    functions = {f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
                 for name in ("JobMarket", "TestToken") for item in abi(name) if item["type"] == "function"}
    called = re.findall(r'cast (?:send|call) \$\w+ "([^"]+)"', README)
    assert len(called) >= 8
    for signature in called:
        plain = re.sub(r"\)\([^()]*\)$", ")", signature)  # cast's "f(args)(returns)" form names the returns too
        assert plain in functions, f"README calls {signature}, which no contract has"
    assert {"postJob", "approve", "accept", "withdraw"} <= {s.split("(")[0] for s in called}
