"""RTSP cameras, packet ring buffers, snapshots and clips (issue #6)."""
