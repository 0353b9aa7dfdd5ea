"""Settings for each component (pydantic-settings), and how a bad value is reported.

One class per component: ``DeviceSettings`` (config/device.py), ``RelaySettings``
(config/relay.py), ``BrokerSettings`` (config/broker.py). Each reads environment variables with
its own prefix (nested fields with ``__``), an optional env file given by ``--env-file``, and
secrets from files (``*_FILE`` variables or a secrets directory).
"""

from touchlamp.config.common import SettingsError, load_settings

__all__ = ["SettingsError", "load_settings"]
