"""Why a frame was dropped: the names of the HAN drop counters, shared by framer and decoder."""

from __future__ import annotations

import enum


class DropReason(enum.StrEnum):
    # Framing (drivers.han.framer)
    BAD_LENGTH = "bad_length"  # length field too short to hold a header, information and FCS
    BAD_ADDRESS = "bad_address"  # address field does not terminate within 4 bytes
    BAD_HCS = "bad_hcs"  # header check failed: the header (and its length field) is corrupt
    BAD_FCS = "bad_fcs"  # frame check failed: bit errors somewhere in the frame
    MISSING_END_FLAG = "missing_end_flag"  # no 0x7E where the length field says the frame ends
    TRUNCATED = "truncated"  # bytes were lost: the next frame (or the end of input) came early
    # Content (drivers.han.decoder)
    ENCRYPTED = "encrypted"  # general-glo-ciphering: the meter encrypts its HAN port
    UNSUPPORTED_APDU = "unsupported_apdu"  # a valid frame that is not a data-notification
    UNDECODABLE = "undecodable"  # a data-notification whose content does not parse as a known list
    VENDOR_MISMATCH = "vendor_mismatch"  # the list contradicts the configured vendor
    LOST_SEGMENTS = "lost_segments"  # a segmented notification whose segments did not all arrive


class FrameRejected(Exception):
    """A frame or notification that must be dropped, with the counter it goes to."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
