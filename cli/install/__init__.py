"""``touchlamp device install`` and ``touchlamp relay install``: put a lamp or a relay in place.

What an install does, under a root prefix (``/`` on the machine itself, a temporary folder in
tests or when preparing an image)::

    /opt/touchlamp/venv                    a virtual environment with touchlamp pip-installed
    /usr/local/bin/touchlamp               a link to the venv's command (when /usr/local/bin exists)
    /etc/touchlamp/                        0711 root: the service opens its broker CA by name
    /etc/touchlamp/{device,relay}.env      0600 root, written once, never overwritten
    /etc/systemd/system/touchlamp-{device,relay}.service
    /etc/systemd/system/multi-user.target.wants/…   enabled (``systemctl enable`` on ``/``)
    /etc/systemd/system/mosquitto.service.d/touchlamp.conf   relay ``--with-broker`` only

Why /etc/touchlamp is 0711 rather than 0700: the services run as a dynamic, unprivileged user
and receive their env file as a systemd credential (``LoadCredential=``), so they never read it
in place; a broker CA certificate named by the settings (public, 0644) must still be openable by
that user. 0711 lets it open a file it knows the name of, without listing the directory.

A root other than ``/`` is for tests and for inspecting what an install would do: a virtual
environment cannot be moved (its scripts name its Python by absolute path), so on a real machine
install with the default root.

Every step is planned by comparing what is wanted with what is there, so running the install
twice changes nothing the second time, and ``--dry-run`` prints the plan without changing
anything. ``uninstall`` removes what install added: the unit and its enablement, and the
virtual environment once no touchlamp unit is left (a Pi may run both the lamp and the relay);
``--purge`` also removes the settings and the service's state. Settings are kept by default,
because after enrollment they hold the lamp's only copy of its password.

The package: ``layout`` (what goes where, per component), ``plan`` (what to do, from the
options and what is already there), ``steps`` (carrying it out), ``templates`` (the files
written), ``sources`` (which touchlamp goes into the venv), ``run`` (install, uninstall and
``python -m touchlamp.install``).
"""

from __future__ import annotations

from touchlamp.install.layout import COMPONENTS, Component, InstallError, on
from touchlamp.install.plan import (
    InstallOptions,
    UninstallOptions,
    groups_advice,
    missing_groups,
    pip_extras,
    plan_install,
    plan_uninstall,
    plan_wifi_setup,
)
from touchlamp.install.run import install, main, uninstall
from touchlamp.install.sources import default_source, installed_version, source_version
from touchlamp.install.steps import Step, carry_out
from touchlamp.install.templates import (
    broker_drop_in_text,
    comitup_conf_text,
    settings_template,
    unit_text,
)
from touchlamp.install_commands import register_install

__all__ = [
    "COMPONENTS",
    "Component",
    "InstallError",
    "InstallOptions",
    "Step",
    "UninstallOptions",
    "broker_drop_in_text",
    "carry_out",
    "comitup_conf_text",
    "default_source",
    "groups_advice",
    "install",
    "installed_version",
    "main",
    "missing_groups",
    "on",
    "pip_extras",
    "plan_install",
    "plan_uninstall",
    "plan_wifi_setup",
    "register_install",
    "settings_template",
    "source_version",
    "uninstall",
    "unit_text",
]
