"""The Faust engine (`TURNLOG_STREAMS_ENGINE=faust`): the Faust agent over
`turnlog.events`, and the timer that keeps the lag gauge current. The default is the
batch engine (`streams.engine`); this one is kept as the plain Faust way, `stream.take`.

One agent, batches of `stream.take_events(batch_size, within=batch_within)`: the body
hands the batch to the runtime and returns when it is projected and its outputs are
delivered; `take_events` then acknowledges the batch (at-least-once).
"""

from __future__ import annotations

from typing import Any, cast

import faust

from turnlog.streams.runtime import StreamsRuntime

AGENT_NAME = "turnlog-streams.project-events"
LAG_INTERVAL = 5.0
"""Seconds between two updates of the consumer lag gauge."""


def register_agents(app: faust.App, runtime: StreamsRuntime) -> None:
    settings = runtime.settings
    events = app.topic(
        settings.events_topic, key_serializer="raw", value_serializer="raw", allow_empty=True
    )

    async def project_events(stream: faust.StreamT[Any]) -> None:
        batches = cast("faust.Stream[Any]", stream).take_events(  # StreamT lacks it
            settings.batch_size, within=settings.batch_within
        )
        async for batch in batches:
            await runtime.handle(batch)

    app.agent(events, name=AGENT_NAME)(project_events)

    async def update_lag() -> None:
        await runtime.update_lag()

    app.timer(LAG_INTERVAL, name="turnlog-streams.update-lag")(update_lag)
