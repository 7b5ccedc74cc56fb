"""Modbus TCP and RTU: device templates (config/devices/), register codec, bus handling."""
