"""Virtual Norwegian AMS meter: the HAN frames of Aidon, Kaifa, Kamstrup and Landis+Gyr meters.

Ground truth (`MeterState`) and a meter (`MeterProfile`) in, byte-exact vendor frames out, either
one at a time (`encode`) or on the vendor's cadence to a pty, TCP clients or memory
(`VirtualMeter`), with fault drills (`FaultInjector`). Written from the vendors' HAN interface
descriptions and public captures, independently of the product's decoder in drivers/han.
"""

from .encoder import encode, secondary_side, supported_lists
from .faults import DropBytes, Fault, FaultInjector, FlipBits, Freeze, Garbage, ScheduledFault, Silence
from .load import SlowLoad
from .meter import SentFrame, VirtualMeter
from .model import ListType, MeterProfile, MeterState, Vendor, default_profile
from .outputs import MemoryOutput, Output, PtyOutput, SerialOutput, TcpOutput
from .schedule import Slot, list_at, next_slot, slots_between

__all__ = [
    "DropBytes",
    "Fault",
    "FaultInjector",
    "FlipBits",
    "Freeze",
    "Garbage",
    "ListType",
    "MemoryOutput",
    "MeterProfile",
    "MeterState",
    "Output",
    "PtyOutput",
    "ScheduledFault",
    "SentFrame",
    "SerialOutput",
    "Silence",
    "Slot",
    "SlowLoad",
    "TcpOutput",
    "Vendor",
    "VirtualMeter",
    "default_profile",
    "encode",
    "list_at",
    "next_slot",
    "secondary_side",
    "slots_between",
    "supported_lists",
]
