"""Topics as ``schemas.topics`` declares them: created when missing, configs kept in line."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from turnlog.infra.stack.errors import StackError
from turnlog.schemas.topics import TopicSpec

_TOPIC_ALREADY_EXISTS = 36  # a concurrent creator won; the declared configs still apply


class TopicProvisioningError(StackError):
    """The broker refused to create or reconfigure a declared topic."""


@dataclass(frozen=True)
class TopicState:
    """A topic as the broker reports it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


async def describe_topics(
    admin: AIOKafkaAdminClient, names: Iterable[str]
) -> dict[str, TopicState]:
    """Partitions, replication and the explicitly set configs of existing topics."""
    wanted = [n for n in names if n in set(await admin.list_topics())]
    if not wanted:
        return {}
    described = {t["topic"]: t for t in await admin.describe_topics(wanted)}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
    )
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for _code, _message, _type, name, entries in response.resources:
            configs[name] = {entry[0]: entry[1] for entry in entries}
    states = {}
    for name in wanted:
        partitions = described[name]["partitions"]
        states[name] = TopicState(
            name=name,
            partitions=len(partitions),
            replication_factor=len(partitions[0]["replicas"]) if partitions else 0,
            configs=configs.get(name, {}),
        )
    return states


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec]) -> list[str]:
    """Create missing topics, add missing partitions, reset drifted configs.

    Returns one line per change; an empty list means everything already matched.
    """
    specs = list(specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await asyncio.wait_for(admin.start(), timeout=20)
    try:
        existing = await describe_topics(admin, [s.name for s in specs])
        changes: list[str] = []
        missing = [s for s in specs if s.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs)
                    )
                    for s in missing
                ]
            )
            failures = [
                f"{name}: {message} (error {code})"
                for name, code, message in response.topic_errors
                if code not in (0, _TOPIC_ALREADY_EXISTS)
            ]
            if failures:
                raise TopicProvisioningError("cannot create topics: " + "; ".join(failures))
            await _wait_visible(admin, [s.name for s in missing])
            changes += [f"created {s.name} ({s.partitions} partitions)" for s in missing]
        for spec in specs:
            state = existing.get(spec.name)
            if state is None:
                continue
            if state.partitions < spec.partitions:
                await admin.create_partitions({spec.name: NewPartitions(spec.partitions)})
                changes.append(f"{spec.name}: partitions {state.partitions} -> {spec.partitions}")
            drift = {k: v for k, v in spec.configs.items() if state.configs.get(k) != v}
            if drift:
                await admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, spec.name, dict(spec.configs))]
                )
                await wait_for_configs(admin, spec.name, spec.configs)
                changes.append(f"{spec.name}: configs reset ({', '.join(sorted(drift))})")
        return changes
    finally:
        await admin.close()


async def _wait_visible(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Created topics reach the brokers' metadata a moment after the controller says so."""
    try:
        async with asyncio.timeout(15):
            while True:  # polling the broker: there is no event to wait on
                if set(names) <= set(await admin.list_topics()):
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TopicProvisioningError(f"created topics did not appear: {names}") from None


async def wait_for_configs(
    admin: AIOKafkaAdminClient, name: str, configs: Mapping[str, str]
) -> None:
    """A config change is answered by the controller before the broker applies it."""
    try:
        async with asyncio.timeout(15):
            while True:  # polling the broker: there is no event to wait on
                state = (await describe_topics(admin, [name]))[name]
                if all(state.configs.get(k) == v for k, v in configs.items()):
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TopicProvisioningError(f"{name}: configs {dict(configs)} did not apply") from None


async def read_topics(bootstrap: str, names: Iterable[str]) -> dict[str, TopicState]:
    """What the broker holds for these topics (for status and tests)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await asyncio.wait_for(admin.start(), timeout=20)
    try:
        return await describe_topics(admin, names)
    finally:
        await admin.close()
