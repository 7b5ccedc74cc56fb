"""The garage site controller: site model, allocation, dispatch, sessions, uplink, CLI."""
