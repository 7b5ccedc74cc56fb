"""Virtual Modbus devices (chargers, meters) on TCP and on a pty (RTU), written from the Modbus
specification and the vendors' register tables without importing drivers/."""
