"""The lamp: a pure core (gestures and looks), a hardware seam, the MQTT link and the simulator."""
