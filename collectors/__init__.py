"""Field-protocol collectors (Modbus TCP, OPC-UA, MQTT) and the simulated plant."""

from collectors.base import Backoff, BoundPoint, CollectorStatus, DeviceCollector

__all__ = ["Backoff", "BoundPoint", "CollectorStatus", "DeviceCollector"]
