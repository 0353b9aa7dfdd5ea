from tests.faults.test_relay_faults import *
from tests.faults.proxy import Direction, Packet
import time

def test_dbg(world):
    proxy = world.proxy()
    t0 = time.monotonic()
    def watch(d, p):
        print(f"{time.monotonic()-t0:7.3f} {d.name} kind={p.kind} dup={p.dup} topic={p.topic} id={p.packet_id}", flush=True)
    proxy.watch(watch)
    a = world.lamp("lamp-a", color=AMBER)
    b = world.lamp("lamp-b", color=BLUE)
    world.pair(a, b)
    relay = world.relay_process(via=proxy)
    world.start(a, b)
    a.touch()
    b.wait_received(1, sender="lamp-a")
    before = _last_touch_ms(world, a)
    print("PAUSE", flush=True)
    proxy.pause(Direction.UP)
    a.touch()
    wait_until(lambda: _last_touch_ms(world, a) > before, "the relay to record the touch")
    print("KILL", flush=True)
    relay.kill9()
    proxy.discard_held()
    proxy.resume()
    print("RESTART", flush=True)
    relay.start()
    print("TOUCH3", flush=True)
    a.touch()
    time.sleep(3)
    print(b.received())
