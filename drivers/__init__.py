"""Device drivers: wire bytes in, typed values out (see drivers.contracts).

Drivers know nothing of the controller.
"""
