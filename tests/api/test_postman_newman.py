"""The Postman collection runs: newman takes it from a live `mkt-x dev` stack and runs it top to
bottom with only `token` set, every request answering as its test script says it documents.

newman (npm, pinned) is installed into .mkt-x/npm on first use (MKTX_NPM_PREFIX elsewhere);
the test is skipped only when node or npm is absent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import sandbox.state as sandbox_state
from api import postman_examples
from mktx.settings import DEV_X_CONSUMER_SECRET
from tests.test_dev_stack import (
    BASE_PATH,
    PORT_VARIABLES,
    _clean_env,
    _free_port,
    _stop_embedded_postgres,
    dev_stack,
)

NEWMAN_VERSION = "6.2.2"
ROOT = Path(__file__).resolve().parents[2]
NPM_PREFIX = Path(os.environ.get("MKTX_NPM_PREFIX", ROOT / ".mkt-x" / "npm"))
INSTALL_TIMEOUT_S = 300
RUN_TIMEOUT_S = 180  # the first AI answer alone takes 10-20 s on a cold, busy machine


def _newman() -> Path:
    """newman at the pinned version under NPM_PREFIX, installed when missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run the collection with newman")
    binary = NPM_PREFIX / "node_modules" / ".bin" / "newman"
    manifest = NPM_PREFIX / "node_modules" / "newman" / "package.json"
    installed = manifest.exists() and json.loads(manifest.read_text()).get("version")
    if not binary.exists() or installed != NEWMAN_VERSION:
        NPM_PREFIX.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund"]
            + [f"newman@{NEWMAN_VERSION}"],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"npm install newman failed:\n{done.stdout}\n{done.stderr}"
    return binary


def test_the_collection_names_the_sandboxs_demo_users_and_the_dev_secret() -> None:
    # api/ may not import the sandbox: its copies of the demo user must stay the sandbox's.
    assert postman_examples.DEMO_BUSINESS_ID == sandbox_state.DEMO_BUSINESS_ID
    assert postman_examples.DEMO_BUSINESS_TOKEN == sandbox_state.DEMO_BUSINESS_TOKEN
    assert postman_examples.DEMO_BUSINESS_TOKEN_SECRET == sandbox_state.DEMO_BUSINESS_TOKEN_SECRET
    assert postman_examples.DEMO_CUSTOMER_ID == sandbox_state.DEMO_CUSTOMER_ID
    assert postman_examples.DEFAULTS["consumerSecret"] == DEV_X_CONSUMER_SECRET


def _requests(collection: dict[str, Any]) -> list[str]:
    return [item["name"] for folder in collection["item"] for item in folder["item"]]


def _failures(report: dict[str, Any]) -> list[str]:
    return [
        f"{f['source'].get('name', '?')}: {f['error'].get('test') or ''} {f['error']['message']}"
        for f in report["run"]["failures"]
    ]


def _slowest(report: dict[str, Any], count: int = 3) -> list[str]:
    timed = [
        (e["response"]["responseTime"], e["item"]["name"])
        for e in report["run"]["executions"]
        if "response" in e
    ]
    return [f"{name} {ms} ms" for ms, name in sorted(timed, reverse=True)[:count]]


@pytest.mark.devstack
def test_newman_runs_the_served_collection_against_mkt_x_dev(tmp_path: Path) -> None:
    newman = _newman()
    data_dir = tmp_path / "data"
    env = _clean_env(
        MKTX_DATA_DIR=str(data_dir), **{name: str(_free_port()) for name in PORT_VARIABLES}
    )
    http = httpx.Client(timeout=30, trust_env=False)  # loopback: no proxy
    try:
        with dev_stack(env, tmp_path, tmp_path / "dev.log") as stack:
            banner = stack.wait_ready()
            served = http.get(f"{banner.api}/postman-collection.json")
            assert served.status_code == 200, served.text
            collection = served.json()
            variables = {v["key"]: v["value"] for v in collection["variable"]}
            assert variables["baseUrl"] == banner.api.removesuffix(BASE_PATH)
            assert variables["sandboxUrl"] == f"http://127.0.0.1:{env['MKTX_SANDBOX_PORT']}"
            path = tmp_path / "collection.json"
            path.write_text(json.dumps(collection))
            report_path = tmp_path / "newman.json"
            started = time.monotonic()
            done = subprocess.run(
                [str(newman), "run", str(path), "--env-var", f"token={banner.token}"]
                + ["--reporters", "cli,json", "--reporter-json-export", str(report_path)]
                + ["--color", "off", "--disable-unicode"],
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
                check=False,
                env={**os.environ, "NO_PROXY": "*"},
            )
            seconds = time.monotonic() - started
            assert report_path.exists(), f"newman wrote no report:\n{done.stdout}\n{done.stderr}"
            report = json.loads(report_path.read_text())
            stats = report["run"]["stats"]
            print(
                f"newman: {stats['requests']['total']} requests, "
                f"{stats['assertions']['total']} assertions, "
                f"{stats['assertions']['failed']} failed, {seconds:.1f} s; slowest: "
                + ", ".join(_slowest(report))
            )
            assert _failures(report) == [], done.stdout[-6000:]
            assert done.returncode == 0, done.stdout[-6000:]
            executed = {e["item"]["name"] for e in report["run"]["executions"]}
            assert executed == set(_requests(collection))
            assert stats["requests"]["failed"] == 0
            assert stats["assertions"]["total"] >= len(executed)  # one status check each
            assert stack.interrupt() == 0, stack.log_tail()
    finally:
        http.close()
        _stop_embedded_postgres(data_dir / "pg")
