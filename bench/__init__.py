"""touchlamp's benchmarks: ``python -m bench [--quick]``; BENCHMARKS.md explains and records them.

One module per benchmark (``latency``, ``throughput``, ``fleet``, ``footprint``, ``scaleout``),
each a ``run(context) -> list[Result]``; the parts they share: ``site`` (a Mosquitto, lamps, relay
processes), ``swarm`` (many light MQTT clients on one thread), ``burst`` and ``pairs`` (counting
touches exactly), ``peer`` (the plain-paho baselines, in processes of their own), ``procfs``
(CPU and memory from /proc), ``stats`` and ``results``.
"""
