"""Hardware-in-the-loop simulator of a garage.

Implements the wire protocols (HAN/DLMS, OCPP, Modbus) from their specifications on its own: it must
not import `controller` or `drivers`, so that a codec bug cannot cancel itself out in a test.
"""
