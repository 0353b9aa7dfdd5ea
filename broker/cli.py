"""``touchlamp broker …``: run a managed Mosquitto, write its config, manage lamps on it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from touchlamp.broker.acl import INSTALLED_RELAY_CLIENT_ID
from touchlamp.broker.admin import BrokerAdmin
from touchlamp.broker.certs import (
    DEFAULT_SERVER_DAYS,
    make_certificates,
    validate_dns_name,
    validate_ip,
)
from touchlamp.broker.install import DEFAULT_INSTALLED_DYNSEC_FILE, write_install_files
from touchlamp.broker.launcher import ManagedBroker, connect_host
from touchlamp.broker.state import import_lamps, load_credentials
from touchlamp.config.broker import BrokerSettings
from touchlamp.config.common import load_settings
from touchlamp.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from touchlamp.protocol.topics import Topics
from touchlamp.stopping import StopSignals

__all__ = ["register"]

# How often `broker run` checks that Mosquitto is still alive while waiting for a signal.
_WATCH_INTERVAL = 0.5


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    broker = subparsers.add_parser(
        "broker",
        help="run Mosquitto, write its config, add or remove lamps",
        description="Mosquitto configured by touchlamp: per-lamp credentials and ACLs.",
    )
    commands = broker.add_subparsers(title="broker commands", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run Mosquitto in the foreground (Ctrl-C stops it)",
        description="Start Mosquitto with touchlamp's config from a state dir, in the foreground.",
    )
    _connection_options(run)
    run.set_defaults(func=_run)

    config = commands.add_parser(
        "config",
        help="write a conf.d drop-in and credentials for a system Mosquitto",
        description="Write touchlamp.conf for /etc/mosquitto/conf.d/, the dynamic-security store "
        "and the admin/relay credentials into DIR (each file says how to install it).",
    )
    config.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    config.add_argument("--host", help="listener address (default from settings: 127.0.0.1)")
    config.add_argument("--port", type=int, help="listener port (default from settings: 1883)")
    config.add_argument(
        "--dynsec-file",
        type=Path,
        default=DEFAULT_INSTALLED_DYNSEC_FILE,
        help=f"where the store will be installed (default {DEFAULT_INSTALLED_DYNSEC_FILE})",
    )
    _env_file_option(config)
    config.set_defaults(func=_config)

    certs = commands.add_parser(
        "certs",
        help="make a private CA and the broker's TLS certificate (for lamps on other hosts)",
        description="Create a private CA in DIR (or keep the one there) and issue the broker's "
        "TLS certificate for every --host and --ip the lamps dial. Enrollment tokens carry the "
        "CA, so each lamp verifies the broker. Run it again to renew: the CA is kept, so lamps "
        "enrolled earlier need nothing new.",
    )
    certs.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    certs.add_argument(
        "--host",
        action="append",
        default=[],
        type=_argument(_name_or_address),
        metavar="NAME",
        help="a DNS name (or address) lamps dial, e.g. mqtt.example.net (repeat for more)",
    )
    certs.add_argument(
        "--ip",
        action="append",
        default=[],
        type=_argument(validate_ip),
        metavar="ADDRESS",
        help="an IP address lamps dial, e.g. 192.168.1.20 (repeat for more)",
    )
    certs.add_argument(
        "--days",
        type=int,
        default=DEFAULT_SERVER_DAYS,
        help=f"validity of the broker's certificate (default {DEFAULT_SERVER_DAYS})",
    )
    certs.set_defaults(func=_certs)

    lamp = commands.add_parser(
        "lamp",
        help="add, remove or list lamps on a running broker",
        description="Manage lamp credentials on a running broker (no restart needed).",
    )
    lamp_commands = lamp.add_subparsers(title="lamp commands", metavar="COMMAND", required=True)
    add = lamp_commands.add_parser(
        "add",
        help="add lamps and print their passwords (once)",
        description=(
            "Add one or more lamps (all or none). One lamp: its password on standard output. "
            "Several: one line per lamp, its id and its password separated by a tab."
        ),
    )
    add.add_argument("lamp_ids", metavar="ID", nargs="+", help="lamp id, e.g. kitchen-lamp")
    _connection_options(add)
    add.set_defaults(func=_lamp_add)
    imported = lamp_commands.add_parser(
        "import",
        help="add many lamps to a STOPPED broker at once and print their passwords (once)",
        description=(
            "Write lamps straight into a stopped broker's dynamic-security file: the same "
            "login, role and client-id binding as 'add', in one write instead of two saves of "
            "the whole file per lamp (10,000 lamps: ~5 s instead of hours). Refused while "
            "something listens on the broker's port. One 'ID<tab>PASSWORD' line per lamp."
        ),
    )
    imported.add_argument("lamp_ids", metavar="ID", nargs="*", help="lamp id, e.g. kitchen-lamp")
    imported.add_argument(
        "--ids-file", type=Path, metavar="FILE", help="more lamp ids, one a line ('-': stdin)"
    )
    _connection_options(imported)
    imported.set_defaults(func=_lamp_import)
    remove = lamp_commands.add_parser("remove", help="remove a lamp (disconnects it now)")
    remove.add_argument("lamp_id", metavar="ID")
    _connection_options(remove)
    remove.set_defaults(func=_lamp_remove)
    listing = lamp_commands.add_parser("list", help="list the lamps")
    _connection_options(listing)
    listing.set_defaults(func=_lamp_list)

    relay = commands.add_parser(
        "relay",
        help="add or remove the login of a further relay process on a running broker",
        description=(
            "Each relay login may use one client id only (SECURITY.md): 'relay' the relay's "
            "default, touchlamp-relay; a login added here its own NAME. A second relay process "
            "runs with TOUCHLAMP_RELAY_MQTT__USERNAME=NAME and "
            "TOUCHLAMP_RELAY_MQTT__CLIENT_ID=NAME."
        ),
    )
    relay_commands = relay.add_subparsers(title="relay commands", metavar="COMMAND", required=True)
    relay_add = relay_commands.add_parser(
        "add", help="add relay login NAME (client id NAME) and print its password (once)"
    )
    relay_add.add_argument("name", metavar="NAME", help="login and client id, e.g. relay-2")
    _connection_options(relay_add)
    relay_add.set_defaults(func=_relay_add)
    relay_remove = relay_commands.add_parser(
        "remove", help="remove relay login NAME (disconnects it now)"
    )
    relay_remove.add_argument("name", metavar="NAME")
    _connection_options(relay_remove)
    relay_remove.set_defaults(func=_relay_remove)


def _argument(validate: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse ``type`` that turns a validator's ValueError into a usage error (exit 2)."""

    def convert(text: str) -> str:
        try:
            return validate(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _name_or_address(text: str) -> str:
    try:
        return validate_ip(text)
    except ValueError:
        return validate_dns_name(text)


def _env_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-file", type=Path, help="settings file (TOUCHLAMP_BROKER_* lines, see config/)"
    )


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, metavar="DIR", help="the broker's state dir")
    parser.add_argument("--host", help="listener address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listener port (default 1883)")
    _env_file_option(parser)


def _settings(args: argparse.Namespace) -> BrokerSettings:
    overrides: dict[str, object] = {}
    if getattr(args, "state_dir", None) is not None:
        overrides["state_dir"] = args.state_dir
    if args.host is not None or args.port is not None:
        base = load_settings(BrokerSettings, env_file=args.env_file).listeners[0]
        overrides["listeners"] = [
            {
                "address": args.host if args.host is not None else base.address,
                "port": args.port if args.port is not None else base.port,
            }
        ]
    return load_settings(BrokerSettings, env_file=args.env_file, **overrides)


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # stop_with_parent: killed with SIGKILL, `broker run` leaves no Mosquitto behind either.
    broker = ManagedBroker(settings, stop_with_parent=True)
    with StopSignals() as stop:  # SIGTERM, SIGINT (Ctrl-C), SIGHUP (a closed terminal)
        try:
            broker.start()
            _describe(broker)
            while not stop.wait(_WATCH_INTERVAL):
                if not broker.running:
                    tail = broker.log_tail()
                    print(
                        f"touchlamp: mosquitto stopped unexpectedly; its log ends:\n{tail}",
                        file=sys.stderr,
                    )
                    return EXIT_FAILURE
            broker.stop()
            print("touchlamp: broker stopped", flush=True)
            return EXIT_OK
        finally:
            broker.stop()


def _describe(broker: ManagedBroker) -> None:
    settings = broker.settings
    layout = broker.layout
    credentials = broker.credentials
    lines = [f"touchlamp: mosquitto (pid {broker.pid}) is running; Ctrl-C stops it"]
    lines += [f"  mqtt://{item.address}:{item.port}" for item in settings.listeners]
    if settings.tls.enabled:
        lines.append(f"  mqtts://{settings.tls.address}:{settings.tls.port}")
    if settings.websockets.enabled:
        scheme = "wss" if settings.websockets.tls else "ws"
        lines.append(f"  {scheme}://*:{settings.websockets.port} (every interface)")
    admin, relay = credentials.admin_username, credentials.relay_username
    lines += [
        f"  topic root     {settings.topic_root}",
        f"  admin user     {admin!r}, password in {layout.admin_password_file}",
        (
            f"  relay user     {relay!r} (client id {INSTALLED_RELAY_CLIENT_ID!r}), password in "
            f"{layout.relay_password_file}"
        ),
        f"  log            {layout.log_file}",
        (
            f"  add a lamp:    touchlamp broker lamp add ID --state-dir {layout.root} "
            f"--port {broker.port}"
        ),
    ]
    print("\n".join(lines), flush=True)


def _config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    files = write_install_files(settings, out_dir=args.out, dynsec_file=args.dynsec_file)
    print(
        f"touchlamp: wrote {files.drop_in}, {files.dynsec} and the credentials in "
        f"{files.admin_password.parent}; {files.drop_in.name} starts with how to install them"
    )
    return EXIT_OK


def _certs(args: argparse.Namespace) -> int:
    if not args.host and not args.ip:
        print(
            "touchlamp: pass --host NAME and/or --ip ADDRESS: what the lamps dial to reach "
            "the broker (the certificate is valid for exactly those)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    made = make_certificates(args.out, hosts=args.host, ips=args.ip, days=args.days)
    covered = ", ".join([*made.names, *made.addresses])
    ca_note = "a new private CA" if made.ca_created else "the existing CA (kept: lamps trust it)"
    dial = (made.names or made.addresses)[0]
    print(
        f"touchlamp: signed with {ca_note} a certificate for {covered}, valid until "
        f"{made.expires:%Y-%m-%d}:\n"
        f"  {made.ca_certificate}  the CA's certificate: enrollment tokens carry it\n"
        f"  {made.ca_key}  the CA's key (0600): keep it private; renewing re-uses it\n"
        f"  {made.certificate}  the broker's certificate\n"
        f"  {made.key}  the broker's key (0600)\n"
        "Broker settings (`touchlamp broker run|config --env-file …`; a system Mosquitto reads "
        "the key as user mosquitto: install it with -o mosquitto -m 600):\n"
        "  TOUCHLAMP_BROKER_TLS__ENABLED=true\n"
        f"  TOUCHLAMP_BROKER_TLS__CERTFILE={made.certificate}\n"
        f"  TOUCHLAMP_BROKER_TLS__KEYFILE={made.key}\n"
        "Relay settings, so enrollment tokens send lamps there with this CA:\n"
        f"  TOUCHLAMP_RELAY_PUBLIC__HOST={dial}\n"
        "  TOUCHLAMP_RELAY_PUBLIC__TLS=true\n"
        f"  TOUCHLAMP_RELAY_PUBLIC__CA_FILE={made.ca_certificate}"
    )
    return EXIT_OK


def _admin(args: argparse.Namespace) -> BrokerAdmin:
    settings = _settings(args)
    credentials = load_credentials(settings)
    listener = settings.listeners[0]
    return BrokerAdmin(
        host=connect_host(listener.address),
        port=listener.port,
        username=credentials.admin_username,
        password=credentials.admin_password,
        topics=Topics(settings.topic_root),
    )


def _lamp_add(args: argparse.Namespace) -> int:
    def add(admin: BrokerAdmin) -> None:
        lamp_ids: list[str] = args.lamp_ids
        passwords = admin.add_lamps(lamp_ids)
        if len(lamp_ids) == 1:
            (lamp_id,) = lamp_ids
            print(
                f"touchlamp: lamp {lamp_id!r} added (username and client id {lamp_id!r}). "
                "Its password follows on standard output; it is not shown again:",
                file=sys.stderr,
            )
            print(passwords[lamp_id])
            return
        print(
            f"touchlamp: {len(lamp_ids)} lamps added (username = client id = lamp id). Their "
            "passwords follow on standard output, one 'ID<tab>PASSWORD' line each; they are "
            "not shown again:",
            file=sys.stderr,
        )
        for lamp_id in lamp_ids:
            print(f"{lamp_id}\t{passwords[lamp_id]}")

    return _with_admin(args, add)


def _lamp_import(args: argparse.Namespace) -> int:
    lamp_ids: list[str] = list(args.lamp_ids)
    if args.ids_file is not None:
        try:
            text = sys.stdin.read() if str(args.ids_file) == "-" else args.ids_file.read_text()
        except OSError as error:
            print(f"touchlamp: cannot read {args.ids_file}: {error.strerror}", file=sys.stderr)
            return EXIT_USAGE
        lamp_ids += [line.strip() for line in text.splitlines() if line.strip()]
    if not lamp_ids:
        print("touchlamp: no lamp ids: give them as arguments or with --ids-file", file=sys.stderr)
        return EXIT_USAGE
    passwords = import_lamps(_settings(args), lamp_ids)
    print(
        f"touchlamp: {len(lamp_ids)} lamps imported (username = client id = lamp id); they can "
        "log in once the broker is started. Their passwords follow on standard output, one "
        "'ID<tab>PASSWORD' line each; they are not shown again:",
        file=sys.stderr,
    )
    for lamp_id in lamp_ids:
        print(f"{lamp_id}\t{passwords[lamp_id]}")
    return EXIT_OK


def _lamp_remove(args: argparse.Namespace) -> int:
    def remove(admin: BrokerAdmin) -> None:
        admin.remove_lamp(args.lamp_id)
        print(f"touchlamp: lamp {args.lamp_id!r} removed; it was disconnected if it was online")

    return _with_admin(args, remove)


def _relay_add(args: argparse.Namespace) -> int:
    def add(admin: BrokerAdmin) -> None:
        password = admin.add_relay(args.name)
        print(
            f"touchlamp: relay login {args.name!r} added (username and client id {args.name!r}). "
            "Its password follows on standard output; it is not shown again:",
            file=sys.stderr,
        )
        print(password)

    return _with_admin(args, add)


def _relay_remove(args: argparse.Namespace) -> int:
    def remove(admin: BrokerAdmin) -> None:
        admin.remove_relay(args.name)
        print(f"touchlamp: relay login {args.name!r} removed; its connection was closed")

    return _with_admin(args, remove)


def _lamp_list(args: argparse.Namespace) -> int:
    def listing(admin: BrokerAdmin) -> None:
        for lamp_id in admin.list_lamps():
            print(lamp_id)

    return _with_admin(args, listing)


def _with_admin(args: argparse.Namespace, action: Callable[[BrokerAdmin], None]) -> int:
    with _admin(args) as admin:
        action(admin)
    return EXIT_OK
