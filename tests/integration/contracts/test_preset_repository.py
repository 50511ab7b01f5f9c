"""Contract of PresetRepository, on the in-memory and the Postgres unit of work."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import pytest

from whalli.domain.model.chats import GenerationParams
from whalli.domain.model.errors import PresetNotFound, UserNotFound
from whalli.domain.model.presets import Preset
from whalli.domain.model.users import User

from ..conftest import UowFactory
from ..entities import NOW, a_user, at

PARAMS = GenerationParams(
    temperature=0.2, max_tokens=512, top_p=0.9, stop=("\n\n", "END"), seed=-(2**63),
    presence_penalty=-1.5, frequency_penalty=2.0,
)  # fmt: skip


def a_preset(user: User, *, now: datetime = NOW, **fields: object) -> Preset:
    values: dict[str, object] = {"name": "Terse coder", "model": "openai/gpt-4o-mini"} | fields
    return Preset.create(id=uuid.uuid4(), user_id=user.id, now=now, **values)  # type: ignore[arg-type]


async def stored(uow_factory: UowFactory, user: User, *presets: Preset) -> None:
    async with uow_factory() as uow:
        await uow.users.add(user)
        for preset in presets:
            await uow.presets.add(preset)
        await uow.commit()


async def test_a_preset_reads_back_equal_with_every_parameter(uow_factory: UowFactory) -> None:
    user = a_user()
    full = a_preset(user, system_prompt="Answer in code only.", params=PARAMS)
    bare = a_preset(user, name="Bare", now=at(1))
    await stored(uow_factory, user, full, bare)

    async with uow_factory() as uow:
        assert await uow.presets.get(full.id) == full
        assert await uow.presets.get(bare.id) == bare
        assert (await uow.presets.get(bare.id)).params == GenerationParams()


async def test_a_user_s_presets_are_listed_oldest_first_and_counted(
    uow_factory: UowFactory,
) -> None:
    alice, bob = a_user(), a_user()
    later, earlier = a_preset(alice, name="later", now=at(60)), a_preset(alice, name="earlier")
    await stored(uow_factory, alice, later, earlier)
    await stored(uow_factory, bob, a_preset(bob))

    async with uow_factory() as uow:
        assert [p.name for p in await uow.presets.list_for_user(alice.id)] == ["earlier", "later"]
        assert await uow.presets.count_for_user(alice.id) == 2
        assert await uow.presets.count_for_user(uuid.uuid4()) == 0


async def test_an_update_is_read_back_and_a_delete_removes_it(uow_factory: UowFactory) -> None:
    user = a_user()
    preset = a_preset(user)
    await stored(uow_factory, user, preset)
    preset.name, preset.params, preset.updated_at = "Renamed", PARAMS, at(5)
    preset.system_prompt = "New instructions."

    async with uow_factory() as uow:
        await uow.presets.update(preset)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.presets.get(preset.id) == preset
        await uow.presets.delete(preset.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.presets.list_for_user(user.id) == []


async def test_an_unknown_preset_is_not_found(uow_factory: UowFactory) -> None:
    preset = a_preset(a_user())
    async with uow_factory() as uow:
        with pytest.raises(PresetNotFound, match="Preset not found"):
            await uow.presets.get(preset.id)
        with pytest.raises(PresetNotFound, match="Preset not found"):
            await uow.presets.get_for_update(preset.id)
        with pytest.raises(PresetNotFound, match="Preset not found"):
            await uow.presets.update(preset)
        with pytest.raises(PresetNotFound, match="Preset not found"):
            await uow.presets.delete(preset.id)


async def test_a_preset_needs_an_existing_user(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.presets.add(a_preset(a_user()))


async def test_get_for_update_lets_one_unit_of_work_at_a_time_change_a_preset(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    preset = a_preset(user, name="Coder")
    await stored(uow_factory, user, preset)

    async def rename(n: int) -> None:
        async with uow_factory() as uow:
            locked = await uow.presets.get_for_update(preset.id)
            await asyncio.sleep(0)  # let the others reach the lock
            locked.name = f"{locked.name} {n}"
            await uow.presets.update(locked)
            await uow.commit()

    await asyncio.gather(*(rename(n) for n in range(5)))

    async with uow_factory() as uow:
        stored_name = (await uow.presets.get(preset.id)).name
        await uow.presets.get_for_update(preset.id)
        await uow.presets.get_for_update(preset.id)  # the holder may lock again
    assert sorted(stored_name.split()[1:]) == ["0", "1", "2", "3", "4"]
