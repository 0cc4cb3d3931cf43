"""Drive ``run_check`` tick by tick with a clock the test moves, against local fakes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from addon_watch.ack import AckClient
from addon_watch.config import Settings, load_settings
from addon_watch.credentials import resolve_credentials
from addon_watch.handler import build_notifiers
from addon_watch.notify import Notifier
from addon_watch.render import Message, Renderer
from addon_watch.store import Store
from addon_watch.watcher import Summary, run_check
from tests.fakes.ack_simulator import AckSimulator
from tests.fakes.webhooks import DINGTALK_SECRET, WebhookReceiver

CLUSTER = "c8f2e1d0a9b8c7d6e5f4a3b2c1d0e9f8a"
ADDON = "metrics-server"
OTHER = "nginx-ingress-controller"
CHANNELS = ("dingtalk", "slack")


def environment(
    sim: AckSimulator,
    hooks: WebhookReceiver,
    state_store: str,
    targets: tuple[str, ...] = (f"{CLUSTER}/{ADDON}", f"{CLUSTER}/{OTHER}"),
) -> dict[str, str]:
    """The settings of a function watching ``targets``, posting to both local channels."""
    return {
        "WATCH_TARGETS": ",".join(targets),
        "ACK_ENDPOINT": sim.endpoint,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": sim.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": sim.access_key_secret,
        "DINGTALK_WEBHOOK_URL": hooks.dingtalk_url,
        "DINGTALK_SECRET": DINGTALK_SECRET,
        "SLACK_WEBHOOK_URL": hooks.slack_url,
        "STATE_STORE": state_store,
    }


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Crash(BaseException):
    """The process dying: nothing after it runs."""


class CrashingNotifier:
    """A channel whose run dies just before the message leaves."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def build(self, message: Message) -> dict[str, Any]:
        return {"text": message.text}

    def send(self, payload: dict[str, Any]) -> None:
        raise Crash


def crashing_notifiers() -> dict[str, Notifier]:
    return {channel: CrashingNotifier(channel) for channel in CHANNELS}


class Clock:
    """The time the store sees; moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Ticks:
    """Runs checks against one simulator and one webhook receiver."""

    def __init__(
        self, sim: AckSimulator, hooks: WebhookReceiver, state_store: str, **env: str
    ) -> None:
        self.sim = sim
        self.hooks = hooks
        self.clock = Clock()
        self.settings: Settings = load_settings({**environment(sim, hooks, state_store), **env})

    def start_upgrade(self) -> None:
        """Both addons exist; one upgrade runs (a first tick then records it silently)."""
        started = stamp(datetime.now(timezone.utc) - timedelta(minutes=3))
        self.sim.add_addon(CLUSTER, ADDON, "v0.3.9.4")
        self.sim.start_task(CLUSTER, ADDON, started)
        self.sim.add_addon(CLUSTER, OTHER, "v1.9.3")

    def finish_upgrade(self, status: str = "Success") -> None:
        finished = stamp(datetime.now(timezone.utc))
        self.sim.finish_task(CLUSTER, ADDON, status, finished, version="v0.3.9.7")

    def seen_then_finished(self, store: Store) -> None:
        """A first tick records the running upgrade silently; then the upgrade ends."""
        self.start_upgrade()
        first = self.tick(store)
        assert (first.checked, first.changes, first.sent) == (2, 0, 0)
        self.finish_upgrade()

    def crash_between_claim_and_send(self, store: Store) -> tuple[Summary, Summary, Summary]:
        """A run claims both messages and dies; then ticks within, after and well after the lease.

        The lease is the default ten minutes.
        """
        with pytest.raises(Crash):
            self.tick(store, notifiers=crashing_notifiers())
        assert self.delivered() == {"dingtalk": 0, "slack": 0}
        summaries = []
        for minutes in (5, 6, 5):
            self.clock.advance(minutes=minutes)
            summaries.append(self.tick(store))
        return summaries[0], summaries[1], summaries[2]

    def delivered(self) -> dict[str, int]:
        """Messages each channel accepted."""
        return {channel: len(self.hooks.delivered(channel)) for channel in CHANNELS}

    def tick(
        self,
        store: Store,
        *,
        notifiers: Mapping[str, Notifier] | None = None,
        **options: Any,
    ) -> Summary:
        """One check at the clock's time; ``options`` go to ``run_check``."""
        session = requests.Session()
        settings = self.settings

        def credentials() -> Any:
            return resolve_credentials(settings.access_key)

        return run_check(
            targets=settings.targets,
            client=AckClient(settings.ack_endpoint, credentials, session),
            store=store,
            notifiers=build_notifiers(settings, session) if notifiers is None else notifiers,
            renderer=Renderer(settings.templates_dir, settings.notify_timezone),
            languages={c: settings.language_for(c) for c in settings.channels},
            trigger="timer",
            clock=self.clock,
            **options,
        )

    def attempts(self, channel: str) -> int:
        """Every request the channel's webhook received, accepted or not."""
        return sum(1 for item in self.hooks.received if item.channel == channel)
