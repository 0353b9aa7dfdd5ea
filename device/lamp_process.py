"""The lamp's process on its pins, as ``touchlamp device run`` starts it (device/cli.py).

``run_on_pins`` puts the parts together — the touch input and light output, the agent and its
link (or, before a token, a link that only waits for one: device/unenrolled.py), Home
Assistant, the owner's settings, the control socket for ``pair`` and ``device set``, and the
lamp's own page — then tells systemd it is ready and runs until a stop signal. Each part stops
in reverse order on the way out.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

from touchlamp import sdnotify
from touchlamp.config.device import DeviceSettings, HomeAssistantSettings
from touchlamp.device import owner_settings
from touchlamp.device.agent import AgentLink, LampAgent, freeze_start_up_objects
from touchlamp.device.clock import SystemClock
from touchlamp.device.control import ControlServer
from touchlamp.device.hardware import PinFactory, TouchInput, open_light_output, open_touch_input
from touchlamp.device.homeassistant_switch import HomeAssistantSwitch
from touchlamp.device.lamp_board import FrameTap, LampBoard
from touchlamp.device.link import LampLink
from touchlamp.device.link_api import LinkSink
from touchlamp.device.network import has_default_route
from touchlamp.device.owner_auth import OwnerAuth
from touchlamp.device.owner_page import OwnerLamp
from touchlamp.device.simulated import unmark_simulated
from touchlamp.device.unenrolled import NOT_ENROLLED_EVENT, Enroller, UnenrolledLink
from touchlamp.device.web import WebServer
from touchlamp.errors import EXIT_OK
from touchlamp.stopping import StopSignals

__all__ = ["run_on_pins"]


def run_on_pins(
    settings: DeviceSettings,
    pins: PinFactory,
    *,
    env_file: Path | None,
    web: tuple[str, int] | None,
    auth: OwnerAuth,
    enroller: Enroller | None = None,
) -> tuple[int, tuple[str, int] | None]:
    """Run the lamp until a stop signal (or, with ``enroller``, until a token was kept);
    returns the exit code and where the page was served (its port, once chosen, is kept)."""
    clock = SystemClock(timezone=settings.quiet_hours.timezone)
    links: list[AgentLink] = []

    def link(sink: LinkSink) -> AgentLink:
        if enroller is not None:
            links.append(UnenrolledLink())
        else:
            links.append(LampLink.from_settings(settings, sink=sink, clock=clock))
        return links[-1]

    watchdog_every = sdnotify.watchdog_due_every()
    touch, light = _open_hardware(settings, pins)
    agent = LampAgent(
        settings=settings,
        touch=touch,
        light=light,
        link=link,
        clock=clock,
        heartbeat=sdnotify.watchdog if watchdog_every is not None else None,
        heartbeat_seconds=watchdog_every,
        network_up=has_default_route,
    )
    # Home Assistant's "Visit" link goes to this page when it is served; the owner's changes to
    # the home broker's settings replace the bridge at once.
    # Not before the lamp has an id of its own: Home Assistant would keep a lamp "unenrolled".
    without_home = settings.model_copy(update={"homeassistant": HomeAssistantSettings()})
    home = HomeAssistantSwitch(
        settings if enroller is None else without_home, agent, page_port=web[1] if web else None
    )
    owner = owner_settings.OwnerSettings(
        lamp=agent, env_file=env_file, on_change=home.apply if enroller is None else None
    )
    pairing = links[0]
    assert isinstance(pairing, LampLink | UnenrolledLink)
    control = ControlServer(
        state_dir=settings.state_dir,
        link=pairing,
        owner=owner,
        describe=lambda: owner_settings.describe_running(agent),
    )
    page = _lamp_page(agent, owner, pairing, light=light, web=web, auth=auth, enroller=enroller)
    if enroller is not None:
        agent.post(NOT_ENROLLED_EVENT)
    unmark_simulated(settings.state_dir)  # on real pins now, whatever ran here before
    with StopSignals() as stop:  # SIGTERM (systemd), SIGINT (Ctrl-C), SIGHUP (a closed terminal)
        try:
            control.start()
            agent.start()
            home.start()
            freeze_start_up_objects()
            web = _announce_and_wait(settings, page, stop, enroller) or web
        finally:
            if page is not None:
                page.stop()
            control.stop()
            home.stop()
            agent.stop()
    return EXIT_OK, web


def _open_hardware(settings: DeviceSettings, pins: PinFactory) -> tuple[TouchInput, FrameTap]:
    touch = open_touch_input(settings.hardware, pin_factory=pins)
    try:
        return touch, FrameTap(open_light_output(settings.hardware, pin_factory=pins))
    except BaseException:
        touch.close()
        raise


def _announce_and_wait(
    settings: DeviceSettings,
    page: WebServer | None,
    stop: StopSignals,
    enroller: Enroller | None,
) -> tuple[str, int] | None:
    """Tell systemd and the terminal, serve the page, and wait for a stop (or, not enrolled
    yet, for a token). Returns where the page is served."""
    if enroller is not None:
        sdnotify.ready("not enrolled: paste the lamp's token on its page")
        print(
            "touchlamp: this lamp is not enrolled yet; paste its token on its page "
            "(or run `touchlamp device enroll TOKEN`)",
            file=sys.stderr,
        )
    else:
        where = f"{settings.mqtt.host}:{settings.mqtt.effective_port}"
        sdnotify.ready(f"lamp {settings.lamp_id}, broker {where}")
        print(f"touchlamp: lamp {settings.lamp_id} running (broker {where})", file=sys.stderr)
    served = _start_page(page)  # a port of 0 picked one: a restart keeps it
    if enroller is None:
        stop.wait()
    else:
        while not enroller.enrolled.is_set() and not stop.wait(timeout=0.5):
            pass  # the token arrives on the page's thread; a restart follows
    if stop.is_set():
        sdnotify.stopping()
    return served


def _lamp_page(
    agent: LampAgent,
    owner: owner_settings.OwnerSettings,
    link: LampLink | UnenrolledLink,
    *,
    light: FrameTap,
    web: tuple[str, int] | None,
    auth: OwnerAuth,
    enroller: Enroller | None,
) -> WebServer | None:
    """The lamp's own page (device/lamp_board.py), not started yet; None when switched off."""
    if web is None:
        return None
    settings = agent.settings
    board = LampBoard(
        agent=agent,
        owner=OwnerLamp(
            agent=agent,
            owner=owner,
            link=link,
            auth=auth,
            broker=(settings.mqtt.host, settings.mqtt.effective_port),
            enroller=enroller,
        ),
    )
    light.listeners.append(board.changed)
    host, port = web
    return WebServer(board=board, host=host, port=port)


def _start_page(page: WebServer | None) -> tuple[str, int] | None:
    """Serve the page; a lamp whose page cannot be served still lights up (it says why).
    Returns where it is served (``None``: nowhere)."""
    if page is None:
        return None
    try:
        url = page.start()
    except OSError as error:
        print(f"touchlamp: the lamp's page is not served: {error}", file=sys.stderr)
        return None
    print(
        f"touchlamp: the lamp's page is at {url} (from another device: the Pi's name.local)",
        file=sys.stderr,
    )
    port = urlsplit(url).port
    return None if port is None else (page.host, port)
