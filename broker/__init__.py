"""Mosquitto, configured by touchlamp: rendering, per-lamp credentials and ACLs, a launcher."""
