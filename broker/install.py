"""Files for a system Mosquitto: a ``conf.d`` drop-in plus the initial dynamic-security store.

``touchlamp broker config --out DIR`` writes them; an operator installs them next to Debian's
stock ``/etc/mosquitto/mosquitto.conf``, which already sets ``pid_file``,
``persistence_location`` and ``log_dest`` and includes ``/etc/mosquitto/conf.d`` — so the
drop-in sets none of those (Mosquitto refuses a second ``persistence_location``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from touchlamp.broker.errors import BrokerStateError
from touchlamp.broker.passwords import generate_password, hash_password
from touchlamp.broker.render import (
    Credential,
    MosquittoPaths,
    render_dynsec_json,
    render_mosquitto_conf,
)
from touchlamp.broker.state import StateLayout, load_credentials, write_secret
from touchlamp.config.broker import BrokerSettings
from touchlamp.protocol.topics import Topics

__all__ = [
    "DEFAULT_INSTALLED_DYNSEC_FILE",
    "DROP_IN_NAME",
    "DYNSEC_OUT_NAME",
    "InstallFiles",
    "write_install_files",
]

DROP_IN_NAME = "touchlamp.conf"
DYNSEC_OUT_NAME = "touchlamp-dynamic-security.json"
# Debian's broker runs as `mosquitto`, which owns /var/lib/mosquitto: the plugin can save there.
DEFAULT_INSTALLED_DYNSEC_FILE = Path("/var/lib/mosquitto") / DYNSEC_OUT_NAME


@dataclass(frozen=True, slots=True)
class InstallFiles:
    """What ``write_install_files`` wrote."""

    drop_in: Path
    dynsec: Path
    admin_password: Path
    relay_password: Path


def write_install_files(
    settings: BrokerSettings, *, out_dir: Path, dynsec_file: Path = DEFAULT_INSTALLED_DYNSEC_FILE
) -> InstallFiles:
    """Write the drop-in, the dynamic-security JSON and the credentials into ``out_dir``.

    Existing credentials in ``out_dir/credentials`` are kept, so running it again re-renders the
    files without changing the passwords. ``settings.state_dir`` is not used.
    """
    layout = StateLayout(out_dir)
    try:
        layout.credentials_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise BrokerStateError(
            f"cannot create {layout.credentials_dir} ({error.strerror}): choose another --out"
        ) from error
    for path in (layout.admin_password_file, layout.relay_password_file):
        if not path.exists():
            write_secret(path, generate_password())
    credentials = load_credentials(settings.model_copy(update={"state_dir": out_dir}))
    readme = _readme(settings, out_dir=out_dir, dynsec_file=dynsec_file)
    drop_in = out_dir / DROP_IN_NAME
    drop_in.write_text(
        render_mosquitto_conf(
            settings, paths=MosquittoPaths(dynsec_file=str(dynsec_file)), readme=readme
        ),
        encoding="utf-8",
    )
    dynsec = out_dir / DYNSEC_OUT_NAME
    text = render_dynsec_json(
        topics=Topics(settings.topic_root),
        admin=Credential(credentials.admin_username, hash_password(credentials.admin_password)),
        relays=[Credential(credentials.relay_username, hash_password(credentials.relay_password))],
        readme=" ".join(readme.splitlines()),
    )
    descriptor = os.open(dynsec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    return InstallFiles(
        drop_in=drop_in,
        dynsec=dynsec,
        admin_password=layout.admin_password_file,
        relay_password=layout.relay_password_file,
    )


def _readme(settings: BrokerSettings, *, out_dir: Path, dynsec_file: Path) -> str:
    port = settings.listeners[0].port
    return f"""\
touchlamp's Mosquitto drop-in, written by `touchlamp broker config --out {out_dir}`.
Install it next to Debian's stock /etc/mosquitto/mosquitto.conf (which includes conf.d/ and
sets pid_file, persistence_location and log_dest; this file sets none of them):
  sudo install -m 644 {out_dir / DROP_IN_NAME} /etc/mosquitto/conf.d/
  sudo install -o mosquitto -g mosquitto -m 600 {out_dir / DYNSEC_OUT_NAME} {dynsec_file}
  sudo systemctl restart mosquitto
The JSON is the dynamic-security store (users, roles, ACLs; passwords hashed); Mosquitto
rewrites it on every change, so install it once. Keep {out_dir / "credentials"} private:
admin.password manages lamps (`touchlamp broker lamp add ID --state-dir {out_dir} --port {port}`,
no restart needed), relay.password is the relay's (user {settings.relay_username!r}).
The main file must not set listener security options before this file (per_listener_settings)."""
