"""OAuth client credentials exactly as docs/powerschool-api.md describes them."""

from __future__ import annotations

import base64
import re
import time
import uuid

import httpx
import pytest

EXPECTED_CHALLENGE = 'Bearer error="invalid_token",realm="PowerSchool",error_description="The access token has expired"'


def test_token_answer_shape(api):
    response = api.token_response()
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], str) and body["expires_in"].isdigit()
    uuid.UUID(body["access_token"])


def test_same_token_on_repeat_with_a_smaller_or_equal_expiry(api):
    first = api.token_response().json()
    time.sleep(1.1)
    second = api.http.post(
        "/oauth/access_token/",
        auth=(api.sandbox.client_id, api.sandbox.client_secret),
        data={"grant_type": "client_credentials"},
    ).json()
    assert second["access_token"] == first["access_token"]
    assert int(second["expires_in"]) < int(first["expires_in"])


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic " + base64.b64encode(b"sandbox-learning-plugin:wrong").decode(), "Basic not-base64!", "Bearer x"],
)
def test_bad_client_credentials_are_refused(api, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = api.http.post("/oauth/access_token", data={"grant_type": "client_credentials"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_wrong_grant_type_is_400(api):
    response = api.http.post(
        "/oauth/access_token", auth=(api.sandbox.client_id, api.sandbox.client_secret), data={"grant_type": "password"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize("token", [None, "not-a-token", "0b9f3c2e-5d55-4c4e-9a53-2f1f4c1d2a77"])
def test_missing_or_unknown_token_is_401_with_the_challenge(api, token):
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = api.http.get("/ws/v1/metadata", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == EXPECTED_CHALLENGE


def test_expired_token_is_401_and_a_new_one_is_issued(api, powerschool):
    old = api.token()
    assert api.get("/ws/v1/metadata").status_code == 200
    powerschool.expire_tokens()
    response = api.get("/ws/v1/metadata")
    assert response.status_code == 401
    assert re.search(r'error="invalid_token"', response.headers["WWW-Authenticate"])
    api._token = None
    assert api.token() != old
    assert api.get("/ws/v1/metadata").status_code == 200


def test_configurable_token_lifetime_expires_a_token_mid_run(api, powerschool):
    powerschool.expire_tokens()
    powerschool.configure(token_lifetime_seconds=1)
    body = api.token_response().json()
    assert body["expires_in"] == "1"
    api._token = body["access_token"]
    assert api.get("/ws/v1/metadata").status_code == 200
    time.sleep(1.2)
    assert api.get("/ws/v1/metadata").status_code == 401


def test_the_server_is_only_reachable_with_a_trusted_certificate(powerschool):
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{powerschool.base_url}/ws/v1/metadata")
    # localhost is in the certificate too
    port = powerschool.base_url.rsplit(":", 1)[1]
    response = httpx.get(f"https://localhost:{port}/ws/v1/metadata", verify=powerschool.ssl_context())
    assert response.status_code == 401


def test_expires_in_can_be_a_number(api, powerschool):
    powerschool.configure(expires_in_type="number")
    assert isinstance(api.token_response().json()["expires_in"], int)
