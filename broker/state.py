"""A managed broker's state dir: its config, credentials and Mosquitto's data, and their owners.

Layout (``touchlamp broker run --state-dir DIR``)::

    DIR/mosquitto.conf                  rendered at every start from the settings
    DIR/mosquitto.log                   Mosquitto's log (appended)
    DIR/credentials/admin.password      0600: the dynamic-security admin's password
    DIR/credentials/relay.password      0600: the relay user's password
    DIR/data/                           Mosquitto's working directory and only writable place
    DIR/data/dynamic-security.json      written once by us, then kept up to date by the plugin
    DIR/data/mosquitto.db               persisted sessions and queued messages
    DIR/data/tls/                       copies of the TLS files, when started as root

Started as root, Mosquitto reads its config as root and then switches to ``run_as_user``
(``mosquitto``) *before* loading the dynamic-security plugin and writing its database (measured:
"Error loading Dynamic security plugin config: File is not readable"). So ``data/`` belongs to
that user, and Mosquitto is started with ``data/`` as its working directory and relative paths:
it then needs no permission on the directories above (pytest's 0700 temp dirs, /root, …).
Started as an ordinary user, Mosquitto does not switch user and everything belongs to the caller.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from touchlamp.broker.acl import (
    INSTALLED_RELAY_CLIENT_ID,
    LAMP_CLIENT_TEXT,
    RELAY_ROLE,
    lamp_role,
    relay_role,
)
from touchlamp.broker.errors import BrokerStateError
from touchlamp.broker.passwords import generate_password, hash_password
from touchlamp.broker.render import (
    Credential,
    MosquittoPaths,
    render_dynsec_json,
    render_mosquitto_conf,
)
from touchlamp.config.broker import BrokerSettings
from touchlamp.files import write_atomically
from touchlamp.protocol.topics import Topics, validate_lamp_id

__all__ = [
    "DYNSEC_FILE_NAME",
    "BrokerCredentials",
    "StateLayout",
    "import_lamps",
    "load_credentials",
    "prepare_state_dir",
    "write_secret",
]

DYNSEC_FILE_NAME = "dynamic-security.json"

_CONF_README = """\
Mosquitto configuration rendered by touchlamp (`touchlamp broker run`) at every start.
Edit the settings (TOUCHLAMP_BROKER_* / --env-file), not this file: it is rewritten.
Lamps and relays are users of the dynamic-security plugin (data/dynamic-security.json);
add and remove lamps with `touchlamp broker lamp add|remove|list --state-dir DIR`."""

_DYNSEC_README = (
    "Mosquitto dynamic-security store written by touchlamp: admin and relay users (passwords "
    "hashed, PBKDF2-SHA512), their roles, and everything else denied. The plugin rewrites this "
    "file on every change; manage lamps with `touchlamp broker lamp add|remove|list`."
)


@dataclass(frozen=True, slots=True)
class BrokerCredentials:
    """The plaintext credentials a managed broker's clients use (kept in ``credentials/``)."""

    admin_username: str
    admin_password: str
    relay_username: str
    relay_password: str


@dataclass(frozen=True, slots=True)
class StateLayout:
    """Where each file of a state dir lives."""

    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.root / "mosquitto.log"

    @property
    def credentials_dir(self) -> Path:
        return self.root / "credentials"

    @property
    def admin_password_file(self) -> Path:
        return self.credentials_dir / "admin.password"

    @property
    def relay_password_file(self) -> Path:
        return self.credentials_dir / "relay.password"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def dynsec_file(self) -> Path:
        return self.data_dir / DYNSEC_FILE_NAME


def write_secret(path: Path, secret: str) -> None:
    """Create ``path`` readable by its owner only, holding ``secret`` and a newline."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(secret + "\n")


def load_credentials(settings: BrokerSettings) -> BrokerCredentials:
    """The credentials of an existing state dir; ``BrokerStateError`` naming a missing file."""
    layout = StateLayout(settings.state_dir)
    return BrokerCredentials(
        admin_username=settings.admin_username,
        admin_password=_read_secret(layout.admin_password_file),
        relay_username=settings.relay_username,
        relay_password=_read_secret(layout.relay_password_file),
    )


def prepare_state_dir(settings: BrokerSettings) -> BrokerCredentials:
    """Create or reuse ``settings.state_dir`` so Mosquitto can start from it.

    Re-running keeps the credentials and Mosquitto's data; the config is rendered afresh.
    """
    layout = StateLayout(settings.state_dir)
    _mkdir(layout.root)
    _mkdir(layout.credentials_dir)
    _mkdir(layout.data_dir)
    had_dynsec = layout.dynsec_file.exists()
    created = _ensure_secret(layout.admin_password_file) | _ensure_secret(
        layout.relay_password_file
    )
    if had_dynsec and created:
        raise BrokerStateError(
            f"{layout.dynsec_file} exists but {layout.credentials_dir} lacked a password file, "
            "so its users' passwords are unknown: restore the credentials, or delete the state "
            f"dir {layout.root} to start afresh (its lamps must then be added again)"
        )
    credentials = load_credentials(settings)
    topics = Topics(settings.topic_root)
    if had_dynsec:
        _check_relay_role(layout.dynsec_file, topics)
    else:
        text = render_dynsec_json(
            topics=topics,
            admin=Credential(credentials.admin_username, hash_password(credentials.admin_password)),
            relays=[
                Credential(credentials.relay_username, hash_password(credentials.relay_password))
            ],
            readme=_DYNSEC_README,
        )
        write_atomically(layout.dynsec_file, text, mode=0o600)
    account = _broker_account(settings)
    rendered = settings
    if account is not None and settings.tls.enabled:
        rendered = _stage_tls_files(settings, layout)
    _hand_data_to(account, layout)
    conf = render_mosquitto_conf(
        rendered,
        paths=MosquittoPaths(
            # Relative to data/, Mosquitto's working directory (see the module docstring).
            dynsec_file=DYNSEC_FILE_NAME,
            persistence_location="./",
            user=settings.run_as_user if os.geteuid() == 0 else None,
            log_to_stderr=True,
        ),
        readme=_CONF_README,
    )
    write_atomically(layout.config_file, conf, mode=0o600)
    return credentials


def import_lamps(settings: BrokerSettings, lamp_ids: Sequence[str]) -> dict[str, str]:
    """Write lamps straight into a *stopped* broker's dynamic-security file; id → password.

    The same role and client ``BrokerAdmin.add_lamps`` creates, all or none, in one write. Online,
    Mosquitto 2.0.11's plugin rewrites its whole JSON after every command, so n lamps cost
    O(n²) (measured, BENCHMARKS.md "fleet"); here they cost one file write, and the broker
    reads them when it starts. The broker must not be running: the plugin keeps its own copy in
    memory and would overwrite this file at its next change.
    """
    for lamp_id in lamp_ids:
        validate_lamp_id(lamp_id)
        if lamp_id == INSTALLED_RELAY_CLIENT_ID:
            # Its login would be bound to the relay's client id, and could push the relay off.
            raise BrokerStateError(
                f"{lamp_id!r} is the relay's client id, not usable as a lamp id: choose another"
            )
    if len(set(lamp_ids)) != len(lamp_ids):
        repeated = sorted({lamp_id for lamp_id in lamp_ids if lamp_ids.count(lamp_id) > 1})
        raise BrokerStateError(f"lamp ids given more than once: {', '.join(repeated)}")
    prepare_state_dir(settings)
    layout = StateLayout(settings.state_dir)
    listening = [
        f"{listener.address}:{listener.port}"
        for listener in settings.listeners
        if _accepts(listener.address, listener.port)
    ]
    if listening:
        raise BrokerStateError(
            f"something answers on {', '.join(listening)}: stop the broker of {layout.root} "
            "before importing lamps, or add them to the running broker with "
            "`touchlamp broker lamp add ID…`"
        )
    document = _read_dynsec(layout.dynsec_file)
    clients = _list(document, "clients")
    roles = _list(document, "roles")
    taken = {client.get("username") for client in clients}
    clashing = sorted(set(lamp_ids) & taken)
    if clashing:
        raise BrokerStateError(
            f"{', '.join(clashing)} already exist in {layout.dynsec_file}: remove them first "
            "(touchlamp broker lamp remove ID) or choose other ids; nothing was imported"
        )
    topics = Topics(settings.topic_root)
    passwords = {lamp_id: generate_password() for lamp_id in lamp_ids}
    fresh_roles = {lamp_role(topics, lamp_id).name for lamp_id in lamp_ids}
    # A role left by an interrupted removal may name another topic root: start afresh.
    roles[:] = [role for role in roles if role.get("rolename") not in fresh_roles]
    for lamp_id in lamp_ids:
        role = lamp_role(topics, lamp_id)
        roles.append(role.to_json())
        hashed = hash_password(passwords[lamp_id])
        clients.append(
            {
                "username": lamp_id,
                "textname": LAMP_CLIENT_TEXT,
                # Only this lamp may use this client id, and it may use no other.
                "clientid": lamp_id,
                "password": hashed.hash_b64,
                "salt": hashed.salt_b64,
                "iterations": hashed.iterations,
                "roles": [{"rolename": role.name}],
            }
        )
    write_atomically(layout.dynsec_file, json.dumps(document, indent=1) + "\n", mode=0o600)
    _hand_data_to(_broker_account(settings), layout)
    return passwords


def _list(document: dict[str, object], key: str) -> list[dict[str, object]]:
    items = document.setdefault(key, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise BrokerStateError(f"the dynamic-security file's {key!r} is not a list of objects")
    return items


def _accepts(address: str, port: int) -> bool:
    """Whether a broker already listens on ``address:port`` (a wildcard: on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)  # noqa: S104
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


def _read_dynsec(dynsec_file: Path) -> dict[str, object]:
    try:
        document = json.loads(dynsec_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BrokerStateError(
            f"cannot read {dynsec_file} ({error}): restore it from a backup, or delete the state "
            "dir to start afresh"
        ) from error
    if not isinstance(document, dict):
        raise BrokerStateError(f"{dynsec_file} is not a JSON object: restore it from a backup")
    return document


def _broker_account(settings: BrokerSettings) -> pwd.struct_passwd | None:
    """The account Mosquitto will switch to, or ``None`` when it will run as us (or root)."""
    if os.geteuid() != 0 or settings.run_as_user == "root":
        return None
    try:
        return pwd.getpwnam(settings.run_as_user)
    except KeyError:
        raise BrokerStateError(
            f"user {settings.run_as_user!r}, which Mosquitto switches to when started as root, "
            "does not exist: install Debian's mosquitto package (it creates the user) or set "
            "TOUCHLAMP_BROKER_RUN_AS_USER to an existing account"
        ) from None


def _hand_data_to(account: pwd.struct_passwd | None, layout: StateLayout) -> None:
    """Make ``data/`` (and everything in it) writable by the account Mosquitto runs as."""
    if account is not None:
        for path in (layout.data_dir, *layout.data_dir.rglob("*")):
            os.chown(path, account.pw_uid, account.pw_gid)
        return
    if os.geteuid() == 0:
        return  # Mosquitto runs as root (run_as_user=root) and can write anything.
    # Mosquitto ignores `user` unless started as root: it runs as us and needs data/ ours.
    paths = [layout.data_dir, *layout.data_dir.rglob("*")]
    if not all(os.access(path, os.R_OK | os.W_OK) for path in paths):
        raise BrokerStateError(
            f"{layout.data_dir} (or a file in it) is not writable by this user, so Mosquitto "
            "could not save there: it was probably created by root; run as root again or "
            f"`sudo chown -R {os.getuid()} {layout.root}`"
        )


def _stage_tls_files(settings: BrokerSettings, layout: StateLayout) -> BrokerSettings:
    """Copy the TLS files into ``data/tls`` and return settings that point there.

    Mosquitto reads them after switching user (measured: "Unable to load server certificate
    … Permission denied" for a root-only key), and the account it switches to often may not
    read the originals. The copies are refreshed at every start.
    """
    tls_dir = layout.data_dir / "tls"
    _mkdir(tls_dir)
    staged: dict[str, Path] = {}
    for name in ("certfile", "keyfile", "cafile"):
        source = getattr(settings.tls, name)
        if source is None:
            continue
        target = tls_dir / f"{name}.pem"
        write_atomically(target, Path(source).read_bytes(), mode=0o600)
        staged[name] = Path("tls") / target.name
    return settings.model_copy(update={"tls": settings.tls.model_copy(update=staged)})


def _check_relay_role(dynsec_file: Path, topics: Topics) -> None:
    try:
        document = json.loads(dynsec_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BrokerStateError(
            f"cannot read {dynsec_file} ({error}): restore it from a backup, or delete the state "
            "dir to start afresh"
        ) from error
    roles = document.get("roles", []) if isinstance(document, dict) else []
    found = next(
        (role for role in roles if isinstance(role, dict) and role.get("rolename") == RELAY_ROLE),
        None,
    )
    expected = relay_role(topics).to_json()
    if found is None or _acl_set(found) != _acl_set(expected):
        raise BrokerStateError(
            f"{dynsec_file} was set up for another topic root than {topics.root!r} (its role "
            f"{RELAY_ROLE!r} differs): use that state dir's root, or another state dir"
        )


def _acl_set(role: Mapping[str, object]) -> set[tuple[str, str]]:
    acls = role.get("acls")
    return {
        (str(acl.get("acltype")), str(acl.get("topic")))
        for acl in (acls if isinstance(acls, list) else [])
        if isinstance(acl, dict)
    }


def _ensure_secret(path: Path) -> bool:
    """Create ``path`` with a fresh password unless it exists; whether it was created."""
    if path.exists():
        return False
    write_secret(path, generate_password())
    return True


def _read_secret(path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise BrokerStateError(
            f"cannot read {path} ({error.strerror}): pass the broker's --state-dir, and run as "
            "the user who created it"
        ) from error
    if not secret:
        raise BrokerStateError(f"{path} is empty: restore it or delete the state dir")
    return secret


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise BrokerStateError(
            f"cannot create {path} ({error.strerror}): choose a --state-dir you can write to"
        ) from error
