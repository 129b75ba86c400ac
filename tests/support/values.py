"""Values every test's settings share (tests/conftest.py's ``settings`` and ``api_env``)."""

from __future__ import annotations

import ipaddress

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
LEASE_MS = 1000
