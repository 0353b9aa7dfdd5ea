"""touchlamp: a long-distance touch lamp you run yourself.

The package is one namespace mapped onto the repository's top-level folders:
``touchlamp.protocol`` (protocol/), ``touchlamp.device`` (device/), ``touchlamp.server`` (server/),
``touchlamp.broker`` (broker/) and ``touchlamp.config`` (config/).
"""

__version__ = "0.1.0"
