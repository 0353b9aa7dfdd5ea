"""The relay: forwards each touch to the other lamps of its group; pairing, presence, store."""
