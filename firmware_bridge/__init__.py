"""Firmware relay for chargers: verify, serve on the LAN, staged rollout.

Not built yet: no issue asks for it so far.
"""
