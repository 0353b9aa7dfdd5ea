"""``touchlamp doctor``: checks a lamp's or a relay's set-up and says what to fix.

One line per check, in the order a problem would show up — settings, broker reachable, TLS,
credentials, then what depends on a working connection::

    OK   settings /etc/touchlamp/device.env: lamp lamp-kitchen, broker mqtt.example.net:8883 (TLS)
    FAIL the broker mqtt.example.net:8883 refused user lamp-kitchen (Bad user name or password)
         → fix: re-enroll the lamp: sudo touchlamp device enroll TOKEN --env-file …
    SKIP paired: needs a broker that accepts the lamp's credentials

The exit code is 1 when any check fails, 0 otherwise (SKIP is not a failure).

Doctor never disturbs a running lamp or relay, nor takes what is queued for a stopped one. A
lamp's login is bound to its client id, and one client id means one connection: a second
connection as the lamp would take over its session. So:

- a running lamp is asked through its control socket (``touchlamp.device.control``), which
  shows that its own connection works;
- a stopped lamp's (or relay's) login is tried under its own client id, resuming its persistent
  session (``clean_start=False``, its own session expiry) and acknowledging nothing but doctor's
  own answer, so the broker sends the queued glows (or touches) again when the service returns;
- a running relay is asked through its ``/healthz`` endpoint; the admin login, bound to no
  client id, gets a clean session of doctor's own.

Doctor publishes nothing but a pairing ``status`` request, which changes nothing.

The package, one module per responsibility: ``findings`` (OK/FAIL/SKIP and the printed line),
``probes`` (what the checks read from the system), ``settings_file``, ``network`` (the broker
reachable, its TLS), ``session`` (doctor's own MQTT login), ``device_checks``,
``relay_checks``, and ``command`` (the arguments and the report).
"""

from __future__ import annotations

from touchlamp.doctor.command import register, roles_and_files, run_doctor
from touchlamp.doctor.device_checks import check_device
from touchlamp.doctor.findings import Finding, Outcome
from touchlamp.doctor.probes import Probes, clock_synchronised
from touchlamp.doctor.relay_checks import check_relay

__all__ = [
    "Finding",
    "Outcome",
    "Probes",
    "check_device",
    "check_relay",
    "clock_synchronised",
    "register",
    "roles_and_files",
    "run_doctor",
]
