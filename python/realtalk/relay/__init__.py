"""A Realtime relay: browsers and devices talk to the Realtime API through your server, which
holds the API key; clients only ever hold a short-lived relay token::

    token = issue_token(SECRET, ttl=600)                      # hand this to the browser
    async with Relay("wss://api.openai.com/v1/realtime", api_key=KEY, secret=SECRET) as relay:
        ...                                                   # clients connect to relay.url

The browser connects as it would to OpenAI, with the token in the subprotocol list
(``new WebSocket(url, ["realtime", "openai-insecure-api-key." + token])``); other clients send
``Authorization: Bearer <token>``. Each authenticated client gets its own upstream connection,
made with the relay's key; events flow both ways unchanged (no re-serialisation; except that
with pins, the few events the relay reads whole go up as it read them), checked against a
:class:`RelayPolicy`:

- unauthenticated (a replayed single-use token too): an ``error`` event and close 3000 before
  any upstream connection is made (as the API refuses a bad key); relay full, or its session
  store unavailable: close 1013; too many sessions for the subject: close 1008; an unknown
  ``?intent=`` or a model outside ``allowed_models``: close 4000;
- an event type outside the allowlist, an event that changes what pinning covers, a binary
  frame, a malformed (or too deeply nested) event or one over a rate limit: an ``error`` event
  in the API's own shape (``error.event_id`` echoes the client's), the event is dropped and the
  session goes on; more than ``max_refused_events`` refusals within ``abuse_window_s``: close
  1008;
- a message over ``max_message_bytes``: close 1009 (the frame is never buffered); a text
  message that is not UTF-8: close 1007;
- idle for ``idle_timeout_s``: close 1001; ``max_session_s`` reached: close 1001 with the
  API's own reason ("Your session hit the maximum duration of N minutes.");
- close codes and reasons propagate both ways. When a side vanishes without a close frame the
  other side is closed cleanly (client gone: upstream 1000; upstream gone: client 1011). An
  upstream 3000 concerns the relay's key, not the client: the client gets 1011 and a generic
  error, never the upstream's message (which quotes part of the key).

The key is never sent downstream, never logged and never in an error: one scrub
(:mod:`realtalk.relay.scrub`) covers every message and close reason sent downstream and every
log line. The client's token never goes upstream (the upstream request is built from scratch,
its query from an allowlist).

Modules: ``tokens`` (relay tokens), ``auth`` (where a client's token rides), ``policy``,
``connection`` (one relayed connection: the pumps and the checks), ``scrub``, ``store``
(sessions and nonces, in memory or in Redis for a fleet), ``stats``, ``server`` (:class:`Relay`).

Observability: one INFO log line per connection on the ``realtalk.relay`` logger (id, subject,
duration, bytes and events each way, refusals, who closed and how; the same fields as a dict
in the record's ``relay`` attribute), :attr:`Relay.stats`, and Prometheus text at
``GET /metrics``.
"""

from realtalk.relay.auth import Authenticator
from realtalk.relay.policy import DOCUMENTED_CLIENT_EVENTS, RelayPolicy
from realtalk.relay.server import Relay, run_relay
from realtalk.relay.stats import RelayStats
from realtalk.relay.store import MemoryStore, RedisStore, SessionStore, StoreUnavailable
from realtalk.relay.tokens import InvalidToken, TokenClaims, issue_token, verify_token

__all__ = [
    "DOCUMENTED_CLIENT_EVENTS",
    "Authenticator",
    "InvalidToken",
    "MemoryStore",
    "RedisStore",
    "Relay",
    "RelayPolicy",
    "RelayStats",
    "SessionStore",
    "StoreUnavailable",
    "TokenClaims",
    "issue_token",
    "run_relay",
    "verify_token",
]
