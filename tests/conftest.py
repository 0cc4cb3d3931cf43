"""Shared fixtures: no test reaches a metadata service or the internet."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Set before anything imports alibabacloud-credentials, which reads it at import time.
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"

from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import WebhookReceiver


@pytest.fixture
def simulator() -> Iterator[AckSimulator]:
    with AckSimulator() as sim:
        yield sim


@pytest.fixture
def webhooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver
