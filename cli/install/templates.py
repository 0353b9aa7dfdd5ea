"""The files an install writes from the package's own: the systemd units, Mosquitto's drop-in
and the first settings file."""

from __future__ import annotations

from importlib import resources

from touchlamp.install.layout import STATE_ROOT, UNIT_COMMAND, Component, InstallError

__all__ = ["broker_drop_in_text", "comitup_conf_text", "settings_template", "unit_text"]


def unit_text(component: Component, command: str) -> str:
    """The shipped unit, with its ``ExecStart=`` pointed at ``command``."""
    text = resources.files("touchlamp.systemd").joinpath(component.unit).read_text("utf-8")
    if command == UNIT_COMMAND:
        return text
    marker = f"ExecStart={UNIT_COMMAND} "
    if marker not in text:
        raise InstallError(f"the shipped {component.unit} has no `{marker}` line")
    return text.replace(marker, f"ExecStart={command} ")


def broker_drop_in_text() -> str:
    """touchlamp's systemd drop-in for Debian's mosquitto.service."""
    drop_ins = resources.files("touchlamp.systemd").joinpath("mosquitto.service.d")
    return drop_ins.joinpath("touchlamp.conf").read_text("utf-8")


def comitup_conf_text() -> str:
    """``/etc/comitup.conf`` for a lamp: its hotspot is ``touchlamp-NNNN`` (comitup puts a
    number of four digits, persistent per machine, in place of ``<nnnn>``)."""
    return (
        '# Written by `touchlamp device install --wifi-setup` (DEPLOY.md, "Give a lamp").\n'
        "# With no Wi-Fi it knows, the lamp opens the hotspot touchlamp-NNNN: join it from a\n"
        "# phone, choose your Wi-Fi on the page that opens (or http://10.41.0.1/). comitup(8).\n"
        "ap_name: touchlamp-<nnnn>\n"
    )


def settings_template(component: Component) -> str:
    """The first content of the settings file: the component's example, which describes every
    setting (``config/<role>.env.example``)."""
    example = resources.files("touchlamp.config").joinpath(f"{component.role}.env.example")
    try:
        text = example.read_text("utf-8")
    except FileNotFoundError:
        raise InstallError(
            f"the package has no config/{component.role}.env.example; reinstall touchlamp"
        ) from None
    variable = f"TOUCHLAMP_{component.role.upper()}_STATE_DIR"
    state = f"{STATE_ROOT}/{component.state_directory}"
    return (
        f"{text.rstrip()}\n\n"
        f"# ---- written by `touchlamp {component.role} install` "
        + "-"
        * (60 - len(component.role))
        + f"\n# The service keeps its state in {state} (systemd's StateDirectory=). Naming it\n"
        "# here makes the commands you run by hand with sudo use the same state as the service.\n"
        f"{variable}={state}\n"
    )
