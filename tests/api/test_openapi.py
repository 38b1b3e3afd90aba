"""The OpenAPI description (vvstore/openapi.yaml, linked as docs/openapi.yaml) is kept true.

* The document a node serves at ``GET /openapi.yaml`` is the file, and it is valid OpenAPI.
* create_app registers exactly the route table, :data:`vvstore.routes.ROUTES`.
* Its operations are exactly the client routes create_app registers (the internal sync routes
  are left out on purpose; ``HEAD`` is implied by every ``GET``), its security matches each
  route's credential, and its limits, error codes and id patterns match the code.
* schemathesis fuzzes a live node (an aiohttp server on 127.0.0.1, in a thread with its own
  event loop, started with a token, a cluster secret and one unreachable peer so that every
  field of ``/status`` is exercised). Every operation gets positive cases (data the schema
  allows) and negative cases (data it does not), from a fixed seed:

  - checks on every response: ``not_a_server_error``, ``status_code_conformance``,
    ``content_type_conformance``, ``response_headers_conformance``,
    ``response_schema_conformance`` and ``ignored_auth`` (on a 2xx, schemathesis re-sends the
    call without the token and with a wrong one, and expects 401/403);
  - and our own authentication check, on every case: the same call without the
    ``Authorization`` header must get exactly 401 with the JSON error and
    ``WWW-Authenticate`` (so routes that answer 4xx to the fuzzed input are covered too).

  Bounds: POSITIVE_EXAMPLES + NEGATIVE_EXAMPLES cases per operation (``GET /health`` has no
  parameters, so a single positive case and no negative one). The whole test takes about
  20 s of CPU; the per-operation counts are printed so the CI log shows them.

schemathesis (which brings PyYAML and requests) is imported unconditionally: a CI without it
should fail here, not skip the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import requests
import schemathesis
import yaml
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, seed, settings
from pytest_aiohttp import AiohttpClient
from requests.structures import CaseInsensitiveDict
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from vvstore.actor import ACTOR_ID_RE
from vvstore.api import (
    BATCH_BODY_LIMIT,
    COUNTER_BODY_LIMIT,
    NodeService,
    create_app,
)
from vvstore.auth import TokenAuth, credential_for
from vvstore.codec import MAX_KEY_BYTES, decode_batch
from vvstore.config import NODE_ID_RE, NodeConfig
from vvstore.errors import InvalidRequest, Unauthorized
from vvstore.idempotency import MAX_IDEMPOTENCY_KEY
from vvstore.node import Node, node_app
from vvstore.routes import ROUTES

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILE = ROOT / "vvstore" / "openapi.yaml"
DOCS_SPEC = ROOT / "docs" / "openapi.yaml"
TOKEN = "openapi-test-token-0123456789abcdef0123"
CLUSTER_SECRET = "openapi-test-cluster-secret-0123456789abcdef"
INTERNAL = ("/sync/pull", "/sync/notice", "/sync/retired", "/sync/hello")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

SEED = 20240531
POSITIVE_EXAMPLES = 50
NEGATIVE_EXAMPLES = 25


def load_spec() -> dict[str, Any]:
    spec = yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))
    assert isinstance(spec, dict)
    return spec


def spec_operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def app_routes() -> set[tuple[str, str]]:
    # Routes are registered without calling the service, so any object stands in for it.
    app = create_app(cast(NodeService, object()))
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }


# --- the document itself ---------------------------------------------------------------------


def test_docs_openapi_is_the_packaged_file() -> None:
    assert DOCS_SPEC.is_symlink(), "docs/openapi.yaml should link to vvstore/openapi.yaml"
    assert DOCS_SPEC.resolve() == SPEC_FILE.resolve()


def test_the_spec_is_valid_openapi() -> None:
    import openapi_spec_validator as validator

    spec = load_spec()
    assert spec["openapi"].startswith("3.")
    validator.validate(spec)


async def test_the_node_serves_the_file(aiohttp_client: AiohttpClient, node: Node) -> None:
    client = await aiohttp_client(create_app(node, token=TokenAuth(TOKEN.encode())))
    async with client.get("/openapi.yaml", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 200
        assert r.content_type == "application/yaml"
        served = await r.read()
    assert served == SPEC_FILE.read_bytes()
    assert yaml.safe_load(served) == load_spec()
    async with client.get("/openapi.yaml") as r:
        assert r.status == 401, "the API description needs the token like any client route"


# --- the document matches the code -----------------------------------------------------------


def test_every_client_route_is_described_and_nothing_else() -> None:
    registered = {
        (method, path) for method, path in app_routes() if method != "HEAD" and path not in INTERNAL
    }
    described = set(spec_operations(load_spec()))
    assert registered - described == set(), "routes missing from openapi.yaml"
    assert described - registered == set(), "openapi.yaml describes routes the app lacks"
    # HEAD is implied: aiohttp adds it to exactly the GET routes.
    heads = {path for method, path in app_routes() if method == "HEAD"}
    assert heads == {path for method, path in described if method == "GET"}


def test_the_app_registers_exactly_the_route_table() -> None:
    registered = app_routes()
    gets = {route.path for route in ROUTES if route.method == "GET"}
    assert {(m, p) for m, p in registered if m != "HEAD"} == {(r.method, r.path) for r in ROUTES}
    assert {path for method, path in registered if method == "HEAD"} == gets
    # Routes of one path share one resource, so a wrong method on it is a 405, not a 404.
    app = create_app(cast(NodeService, object()))
    canonical = [resource.canonical for resource in app.router.resources()]
    assert sorted(canonical) == sorted({r.path for r in ROUTES})


def test_the_spec_id_patterns_are_the_code_patterns() -> None:
    schemas = load_spec()["components"]["schemas"]
    assert schemas["NodeId"]["pattern"] == f"^{NODE_ID_RE.pattern}$"
    assert schemas["ActorId"]["pattern"] == f"^{ACTOR_ID_RE.pattern}$"


def test_the_internal_routes_are_left_out_and_say_so() -> None:
    spec = load_spec()
    assert set(INTERNAL) == {route.path for route in ROUTES if route.credential == "cluster"}
    assert not set(INTERNAL) & set(spec["paths"])
    for path in INTERNAL:
        assert path in spec["info"]["description"], f"{path}: say why it is not described"


def test_security_matches_the_route_credentials() -> None:
    spec = load_spec()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for (method, path), operation in spec_operations(spec).items():
        security = operation.get("security", spec["security"])
        needs_token = credential_for(method, path.replace("{key}", "k")) == "token"
        assert (security == [{"bearerAuth": []}]) == needs_token, (method, path, security)
        responses = operation["responses"]
        if needs_token:
            assert responses["401"] == {"$ref": "#/components/responses/Unauthorized"}
        else:
            assert "401" not in responses, (method, path)


def test_unauthorized_codes_are_the_ones_the_token_check_raises() -> None:
    token = TokenAuth(TOKEN.encode())
    codes = set()
    for header in (None, "", "Basic abc", "Bearer", "Bearer " + "x" * 40):
        with pytest.raises(Unauthorized) as info:
            token.check(header)
        codes.add(info.value.code)
    schema = load_spec()["components"]["schemas"]["UnauthorizedError"]
    assert set(schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]) == codes


def test_the_spec_limits_are_the_code_limits() -> None:
    spec = load_spec()
    parameters, schemas = spec["components"]["parameters"], spec["components"]["schemas"]
    assert parameters["Key"]["schema"]["maxLength"] == MAX_KEY_BYTES
    assert schemas["CounterKey"]["maxLength"] == MAX_KEY_BYTES
    assert parameters["IdempotencyKey"]["schema"]["maxLength"] == MAX_IDEMPOTENCY_KEY
    batch = schemas["Batch"]["properties"]["increments"]
    assert batch["items"]["properties"]["idempotency_key"]["maxLength"] == MAX_IDEMPOTENCY_KEY
    item = b'{"key": "k"}'
    for count in (batch["minItems"], batch["maxItems"]):
        decode_batch(b'{"increments": [' + b",".join([item] * count) + b"]}")
    for count in (batch["minItems"] - 1, batch["maxItems"] + 1):
        with pytest.raises(InvalidRequest):
            decode_batch(b'{"increments": [' + b",".join([item] * count) + b"]}")
    limit = next(p for p in spec["paths"]["/counters"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    text = SPEC_FILE.read_text(encoding="utf-8")
    assert f"{COUNTER_BODY_LIMIT // 1024} KiB" in text
    assert f"{BATCH_BODY_LIMIT // (1024 * 1024)} MiB" in text


# --- schemathesis against a live node --------------------------------------------------------


@contextlib.contextmanager
def live_node(data_dir: Path) -> Iterator[str]:
    """A node served over real TCP on 127.0.0.1 from a thread with its own event loop.

    It has a token and a cluster secret, and one peer: a loopback port that is bound but not
    listening, so connections to it are refused and ``/status`` reports a failing peer.
    """
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        config = NodeConfig(
            node_id="fuzzed",
            data_dir=str(data_dir),
            port=0,
            token=TOKEN,
            cluster_secret=CLUSTER_SECRET,
            peers=(f"http://127.0.0.1:{dead.getsockname()[1]}",),
        )
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(node_app(config), handle_signals=False, access_log=None)
        thread = threading.Thread(target=loop.run_forever, name="live-node", daemon=True)
        thread.start()

        async def start() -> int:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port: int = runner.addresses[0][1]
            return port

        try:
            port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
            yield f"http://127.0.0.1:{port}"
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            assert not thread.is_alive()
            loop.close()


@pytest.mark.slow
def test_schemathesis_against_a_live_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        ignored_auth,
    ]
    schema = schemathesis.openapi.from_dict(load_spec())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(spec_operations(load_spec()))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    counts: Counter[tuple[str, str]] = Counter()
    statuses: dict[str, Counter[int]] = {}
    failures: list[str] = []
    started = time.monotonic()

    def fuzz(base_url: str, session: Any, operation: Any, mode: Any, examples: int) -> None:
        label = operation.label
        secured = credential_for(operation.method, operation.path.replace("{key}", "k"))
        seen = statuses.setdefault(label, Counter())

        @seed(SEED)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(mode))
        def run(case: Any) -> None:
            counts[(label, mode.value)] += 1
            response = case.call(base_url=base_url, session=session, headers=auth)
            seen[response.status_code] += 1
            case.validate_response(response, checks=checks, headers=auth)
            if secured != "token":
                return
            # The same request without credentials (schemathesis may have generated an
            # Authorization header for the bearer scheme: drop it too).
            headers = {
                k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
            }
            bare = case.derive(headers=CaseInsensitiveDict(headers)).call(
                base_url=base_url, session=session
            )
            assert "Authorization" not in bare.request.headers
            assert bare.status_code == 401, (label, bare.status_code, bare.text[:200])
            # schemathesis' Response: lower-case header names, a list of values each
            assert bare.headers.get("www-authenticate") == ['Bearer realm="vvstore"']
            assert bare.json()["error"]["code"] == "missing_token", bare.text[:200]

        try:
            run()
        except BaseException as exc:  # schemathesis raises a FailureGroup (a BaseException)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            failures.append(f"{label} ({mode.value}):\n{exc}")

    with live_node(tmp_path / "fuzzed") as base_url, requests.Session() as session:
        for operation in operations:
            fuzz(base_url, session, operation, GenerationMode.POSITIVE, POSITIVE_EXAMPLES)
            if operation.label != "GET /health":  # no parameters, no body: nothing to negate
                fuzz(base_url, session, operation, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)

    elapsed = time.monotonic() - started
    lines = [
        f"schemathesis {schemathesis.__version__}, seed {SEED}, {elapsed:.1f} s, checks: "
        + ", ".join(check.__name__ for check in checks)
        + ", plus: without the token -> 401"
    ]
    for operation in operations:
        label = operation.label
        lines.append(
            f"  {label:<24} positive {counts[(label, 'positive')]:>3}"
            f"  negative {counts[(label, 'negative')]:>3}"
            f"  statuses {dict(sorted(statuses[label].items()))}"
        )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert not failures, "\n\n".join(failures)
    for operation in operations:
        assert counts[(operation.label, "positive")] >= 1, operation.label
    # The fuzzing reached past validation: every write route accepted something.
    for label in ("POST /counters/{key}", "DELETE /counters/{key}", "POST /batch"):
        assert statuses[label][200] > 0, (label, statuses[label])
