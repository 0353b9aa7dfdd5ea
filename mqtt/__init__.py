"""The one MQTT layer: how every touchlamp process talks to the broker (ARCHITECTURE.md).

- ``client``: the one paho client factory, from the settings' broker connection (login, TLS,
  paho's logging, MQTT 5 session).
- ``tls``: the TLS context, and why a broker's certificate was refused, in words naming the fix.
- ``reasons``: what each MQTT 5 reason code means for us (one table, by value).
- ``backoff``: the jittered reconnect delays.
- ``driver``: a long-lived client driven from its owner's thread (the relay's worker).
- ``session``: a short synchronous connection (connect, subscribe, request/response, publish).
"""
