"""The systemd units and the Mosquitto drop-in, shipped inside the package so that
``touchlamp device install`` and ``touchlamp relay install`` (``touchlamp.install``) can put them
in place from a wheel as well as from a clone. Read them with ``importlib.resources``:
``files("touchlamp.systemd") / "touchlamp-device.service"``.
"""
