"""Local OCPP server (CSMS) for chargers on the LAN: OCPP 1.6J and 2.0.1 on one listener.

See docs/ocpp.md for configuration and the security profiles.
"""

from drivers.ocpp.authorization import AuthDecision, AuthEntry, Authorizer, AuthStatus, LocalAuthList, TagKind
from drivers.ocpp.config import ChargePointConfig, CsmsConfig, Quirks, SecurityProfile
from drivers.ocpp.handle import ChargerHandle
from drivers.ocpp.pending import PendingCharger
from drivers.ocpp.server import CentralSystem, SecurityEvent
from drivers.ocpp.transactions import InMemoryTransactionIds, TransactionIds

__all__ = [
    "AuthDecision",
    "AuthEntry",
    "AuthStatus",
    "Authorizer",
    "CentralSystem",
    "ChargePointConfig",
    "ChargerHandle",
    "CsmsConfig",
    "InMemoryTransactionIds",
    "LocalAuthList",
    "PendingCharger",
    "Quirks",
    "SecurityEvent",
    "SecurityProfile",
    "TagKind",
    "TransactionIds",
]
