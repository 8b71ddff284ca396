"""Fixtures shared by the ops tests. The helpers themselves live in tests/ops/harness/."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.pki import CertificateAuthority, ServerCertificate, issue_server_cert, make_ca  # noqa: E402
from harness.procs import stop_all  # noqa: E402
from harness.service import DetectorService, start_detector  # noqa: E402

# The name the test edge serves; production uses detector.cereby.ai (nginx/edge.env).
EDGE_HOSTNAME = "detector.test"


@pytest.fixture(scope="session")
def api_key() -> str:
    """A fresh key for the session's detector (DETECTOR_API_KEY)."""
    return "dsk_" + secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> CertificateAuthority:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def edge_cert(test_ca, tmp_path_factory) -> ServerCertificate:
    """An RSA certificate for EDGE_HOSTNAME (RSA, like a default Let's Encrypt certificate)."""
    return issue_server_cert(test_ca, tmp_path_factory.mktemp("edge-cert"), EDGE_HOSTNAME,
                             key_type="rsa")


@pytest.fixture(scope="session")
def detector(api_key, tmp_path_factory) -> DetectorService:
    """The real detector-api with the real model and `api_key`, shared by the session's tests.
    Tests that stop it must start it again (same ports) before they return."""
    service = start_detector(tmp_path_factory.mktemp("detector"), api_key=api_key)
    yield service
    service.stop()


@pytest.fixture(scope="session", autouse=True)
def _stop_leftover_processes():
    yield
    stop_all()
