"""What every test area shares, one of each (ARCHITECTURE.md, "Tests"):

- ``broker``: ``start_managed_broker`` (touchlamp's Mosquitto on a free loopback port, stopped by
  the session at the latest), ``BrokerFixture`` (what the ``broker`` fixture yields) and its
  ``MqttProbe`` client; ``home_broker``: a home's own plain Mosquitto (Home Assistant's);
- ``relay``: ``running_relay``, a relay in the test's process, connected before the test goes on;
- ``waiting``: ``wait_until`` and ``WAIT``, the one default for how long a test waits;
- ``proxy``: ``FaultProxy``, the TCP proxy that pauses, cuts, resets, black-holes, watches and
  rewrites MQTT between a client and the broker;
- ``raw_mqtt``: ``RawClient``, MQTT byte by byte for what paho will not send;
- ``clock``: ``FakeClock``, time moved by hand (or the system's, shifted);
- ``ports``: free loopback ports.
"""
