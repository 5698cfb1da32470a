"""Hooks for schemathesis runs against docs/openapi.yaml (scripts/schemathesis, docs/schemathesis.toml).

Two things no configuration setting can say:

- How the run authenticates. Every operation that takes a session gets the bearer token of one
  account that scripts/schemathesis registered (GATEHOUSE_USERNAME, GATEHOUSE_PASSWORD: a random
  password no schema example or generated value can hit, so neither `DELETE /api/v1/me` nor
  `PUT /api/v1/me/password` can succeed with it). `DELETE /api/v1/me/sessions` ends that token, as
  may the account's other operations; the next request then logs in again, as a client would.
  A stateful step that follows a link from a login or a password change keeps the token the link
  brought, the session of the account that step chain registered: those chains are the ones that
  change a password and delete an account for real.

- That a schema-valid body is refused with 400 only for what no schema can say. The
  configuration lets `positive_data_acceptance` accept 400 from the registration and the
  password change, since a password that meets the schema may still be too easy to guess; the
  check below holds that 400 to the one code that means that, `weak_password`.
"""

from __future__ import annotations

import os
import threading

import requests
import schemathesis

LOGIN = "/api/v1/sessions"


def _setting(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run schemathesis through scripts/schemathesis")
    return value


class Account:
    """The run's own account: its current token, logged in again once a request finds it ended."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token: str | None = None
        # Every token this account was given: a request that carries one of them was given it
        # here, and one that carries another token got it from a link.
        self.issued: set[str] = set()
        self.device_token: str | None = None

    def current(self) -> str:
        with self.lock:
            if self.token is None:
                self.token = self._log_in()
                self.issued.add(self.token)
            return self.token

    def ended(self, token: str) -> None:
        """The server answered `unauthorized` to `token`: the next request logs in again."""
        with self.lock:
            if token == self.token:
                self.token = None

    def _log_in(self) -> str:
        # The device token of the previous login, as a real client sends it: this client is then
        # judged on its own failures only (tcp-server's throttle).
        headers = {"Device-Token": self.device_token} if self.device_token else {}
        response = requests.post(
            _setting("GATEHOUSE_URL") + LOGIN,
            json={"username": _setting("GATEHOUSE_USERNAME"), "password": _setting("GATEHOUSE_PASSWORD")},
            headers=headers,
            timeout=10,
        )
        if response.status_code != 200:
            raise RuntimeError(f"the run's account could not log in: {response.status_code} {response.text}")
        body = response.json()
        self.device_token = body["device_token"]
        return body["token"]


ACCOUNT = Account()


# No caching by schemathesis (refresh_interval=None), so no replay of a request whose token had
# ended: its 401 is an answer like any other, and `after_call` below has the next one log in.
@schemathesis.auth(refresh_interval=None)
class MainAccountAuth:
    def get(self, case, context) -> str:
        return ACCOUNT.current()

    def set(self, case, data: str, context) -> None:
        # Registration, login, the pictures and the health checks take no session.
        if not case.operation.definition.raw.get("security"):
            return
        current = case.headers.get("Authorization", "") if case.headers else ""
        if current.startswith("Bearer ") and current.removeprefix("Bearer ") not in ACCOUNT.issued:
            return
        if case.headers is None:
            case.headers = {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def after_call(context, case, response) -> None:
    """Notes that the run's token has ended (after `DELETE /api/v1/me/sessions`, say)."""
    if response.status_code != 401:
        return
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return
    sent = case.headers.get("Authorization", "") if case.headers else ""
    if code == "unauthorized" and sent.startswith("Bearer "):
        ACCOUNT.ended(sent.removeprefix("Bearer "))


@schemathesis.check
def refused_only_as_weak_password(ctx, response, case) -> bool | None:
    """A request the schema calls valid is refused with 400 only as `weak_password`."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    if code != "weak_password":
        raise AssertionError(
            f"A request that meets the schema was refused with 400 `{code}`: only `weak_password` "
            "(a password too easy to guess) may refuse it; the schema must state every other rule"
        )
    return True
