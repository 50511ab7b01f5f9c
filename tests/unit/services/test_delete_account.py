"""Deleting one's own account (DeleteAccount) on the in-memory unit of work."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from tests.unit.services.test_auth import PASSWORD, Auth
from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.attachments import Attachment
from whalli.domain.model.chats import Chat, TokenUsage
from whalli.domain.model.errors import (
    ApiKeyNotAllowed,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
    LastAdmin,
    OwnsSharedProjects,
    ReauthenticationRequired,
    ServiceUnavailable,
)
from whalli.domain.model.projects import MemberRole, Membership, Project
from whalli.domain.model.users import User
from whalli.domain.services.auth.delete_account import DeleteAccount, DeleteAccountHandler
from whalli.domain.services.chat.usage_writes import write_usage_retrying
from whalli.ports.usage import UsageRecord


class Accounts(Auth):
    """``Auth`` with file storage, projects, chats and files to delete."""

    def __init__(self) -> None:
        super().__init__()
        self.blobs = InMemoryBlobStorage()

    async def delete(self, user: User, uow: InMemoryUnitOfWork | None = None, **kw: object) -> None:
        handler = DeleteAccountHandler(
            uow or self.uow(), self.blobs, hasher=self.hasher, clock=self.clock
        )
        kw.setdefault("session_id", self.session_of(user))
        await handler.execute(DeleteAccount(user_id=user.id, **kw))  # type: ignore[arg-type]

    def session_of(self, user: User) -> uuid.UUID | None:
        """The user's latest session (refresh-token family), as its access tokens name it."""
        tokens = [t for t in self.rows("refresh_tokens") if t.user_id == user.id]
        return max(tokens, key=lambda t: t.created_at).family_id if tokens else None

    async def project(self, owner: User, *members: User) -> Project:
        project = Project.create(
            id=uuid.uuid4(), name="Team", owner_id=owner.id, now=self.clock.now()
        )
        async with self.uow() as uow:
            await uow.projects.add(project)
            await uow.projects.add_member(self._member(project, owner, MemberRole.OWNER))
            for member in members:
                await uow.projects.add_member(self._member(project, member, MemberRole.EDITOR))
            await uow.commit()
        return project

    async def add_member(self, project: Project, user: User) -> None:
        async with self.uow() as uow:
            await uow.projects.add_member(self._member(project, user, MemberRole.EDITOR))
            await uow.commit()

    def _member(self, project: Project, user: User, role: MemberRole) -> Membership:
        return Membership(
            project_id=project.id, user_id=user.id, role=role, created_at=self.clock.now()
        )

    def members(self, project: Project) -> list[uuid.UUID]:
        rows: list[Membership] = list(self.store.tables["memberships"].values())
        return [m.user_id for m in rows if m.project_id == project.id]

    async def file(self, project: Project, user: User) -> Attachment:
        attachment_id = uuid.uuid4()
        attachment = Attachment(
            id=attachment_id, project_id=project.id, user_id=user.id,
            object_key=Attachment.key_for(project.id, attachment_id), filename="notes.txt",
            content_type="text/plain", size_bytes=5, sha256="ab" * 32,
            created_at=self.clock.now(), updated_at=self.clock.now(),
        )  # fmt: skip
        await self.blobs.put(attachment.object_key, _chunks(b"notes"), "text/plain")
        async with self.uow() as uow:
            await uow.attachments.add(attachment)
            await uow.commit()
        return attachment

    async def chat(self, project: Project, user: User) -> Chat:
        chat = Chat.start(
            id=uuid.uuid4(), project_id=project.id, user_id=user.id, first_message="Hi",
            now=self.clock.now(),
        )  # fmt: skip
        async with self.uow() as uow:
            await uow.chats.add(chat)
            await uow.commit()
        return chat

    def rows(self, table: str) -> list[object]:
        return list(self.store.tables[table].values())

    def objects(self) -> set[str]:
        return set(self.blobs._objects)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


class FailingCommit(InMemoryUnitOfWork):
    async def commit(self) -> None:
        raise ServiceUnavailable("The database is unavailable.")


class UndeletableBlobs(InMemoryBlobStorage):
    async def delete(self, key: str) -> None:
        raise ServiceUnavailable("s3: connection failed")


@pytest.fixture
def accounts() -> Accounts:
    return Accounts()


def _personal(projects: list[Project]) -> Project:
    [personal] = [p for p in projects if p.personal]
    return personal


async def test_a_confirmed_deletion_ends_the_account_and_its_sessions_and_frees_its_address(
    accounts: Accounts,
) -> None:
    ada, tokens = await accounts.register()
    personal = _personal(await accounts.projects(ada))
    chat = await accounts.chat(personal, ada)
    await accounts.file(personal, ada)

    await accounts.delete(ada, password=PASSWORD)

    assert ada.id not in accounts.store.tables["users"]
    assert accounts.rows("projects") == accounts.rows("chats") == []
    assert accounts.rows("refresh_tokens") == accounts.rows("attachments") == []
    assert chat.id not in accounts.store.tables["chats"]
    assert accounts.objects() == set()
    with pytest.raises(InvalidToken, match="invalid or has expired"):
        await accounts.authenticate(tokens.access_token)
    with pytest.raises(InvalidToken, match="invalid or has expired"):
        await accounts.refresh(tokens.refresh_token)
    with pytest.raises(InvalidCredentials, match="email or password is not correct"):
        await accounts.login()
    fresh, _ = await accounts.register()
    assert fresh.id != ada.id
    assert [p.id for p in await accounts.projects(fresh)] != [personal.id]
    assert accounts.rows("chats") == accounts.rows("attachments") == []


async def test_a_wrong_password_is_refused_as_a_password_change_refuses_it_and_deletes_nothing(
    accounts: Accounts,
) -> None:
    ada, _ = await accounts.register()

    with pytest.raises(InvalidCredentials, match="password is not correct") as refused:
        await accounts.delete(ada, password="not the password")

    assert refused.value.code == "invalid_credentials"
    assert refused.value.details == {"field": "password"}
    assert ada.id in accounts.store.tables["users"]
    assert len(accounts.rows("projects")) == 1


async def test_an_account_with_a_password_must_give_it(accounts: Accounts) -> None:
    ada, _ = await accounts.register()

    with pytest.raises(InvalidInput, match="with your password") as refused:
        await accounts.delete(ada, email="ada@example.com")

    assert refused.value.details == {"field": "password"}
    assert ada.id in accounts.store.tables["users"]


async def test_an_api_key_cannot_delete_the_account(accounts: Accounts) -> None:
    ada, _ = await accounts.register()

    with pytest.raises(ApiKeyNotAllowed, match="API key cannot delete"):
        await accounts.delete(ada, password=PASSWORD, api_key_id=uuid.uuid4())

    assert ada.id in accounts.store.tables["users"]


async def test_an_account_without_a_password_confirms_with_its_address_typed_any_way(
    accounts: Accounts,
) -> None:
    ada, _ = await accounts.register()
    await accounts.change_user(ada, password_hash=None)  # as an OAuth sign-up makes it

    for wrong, said in [
        (None, "confirm the deletion with its email address"),
        ("bob@example.com", "not this account's email address"),
        ("not an address", "not this account's email address"),
    ]:
        with pytest.raises(InvalidInput, match=said) as refused:
            await accounts.delete(ada, email=wrong, password=PASSWORD)
        assert refused.value.details == {"field": "email"}
    assert ada.id in accounts.store.tables["users"]

    await accounts.delete(ada, email="  ADA@Example.COM ")

    assert accounts.rows("users") == accounts.rows("projects") == []


async def test_an_account_without_a_password_needs_a_sign_in_of_the_last_ten_minutes(
    accounts: Accounts,
) -> None:
    # Its address is no secret (a stolen access token reads it): the session must be fresh.
    ada, _ = await accounts.register()
    first = accounts.session_of(ada)
    accounts.clock.advance(timedelta(minutes=10, seconds=1))
    await accounts.login()  # signed in again (the harness signs in by password: before it goes)
    await accounts.change_user(ada, password_hash=None)  # as an OAuth sign-up makes it

    with pytest.raises(ReauthenticationRequired, match="sign in again"):
        await accounts.delete(ada, email="ada@example.com", session_id=first)
    with pytest.raises(ReauthenticationRequired):
        await accounts.delete(ada, email="ada@example.com", session_id=None)
    assert ada.id in accounts.store.tables["users"]

    await accounts.delete(ada, email="ada@example.com")  # its latest session: fresh

    assert accounts.rows("users") == []


async def test_an_account_with_a_password_needs_no_fresh_sign_in(accounts: Accounts) -> None:
    ada, _ = await accounts.register()
    accounts.clock.advance(timedelta(days=3))

    await accounts.delete(ada, password=PASSWORD)

    assert accounts.rows("users") == []


async def test_owning_a_project_others_use_refuses_the_deletion_naming_the_projects(
    accounts: Accounts,
) -> None:
    ada, _ = await accounts.register()
    bob, _ = await accounts.register("bob@example.com")
    shared = await accounts.project(ada, bob)
    alone = await accounts.project(ada)

    with pytest.raises(OwnsSharedProjects, match="transfer their ownership") as refused:
        await accounts.delete(ada, password=PASSWORD)

    assert refused.value.code == "owns_shared_projects"
    assert refused.value.details == {"project_ids": [str(shared.id)]}
    assert {p.id for p in await accounts.projects(ada)} >= {shared.id, alone.id}
    assert ada.id in accounts.store.tables["users"]


async def test_the_personal_project_goes_even_with_other_members_and_they_keep_their_own(
    accounts: Accounts,
) -> None:
    ada, _ = await accounts.register()
    bob, _ = await accounts.register("bob@example.com")
    ada_personal = _personal(await accounts.projects(ada))
    await accounts.add_member(ada_personal, bob)
    bobs_file = await accounts.file(ada_personal, bob)  # goes with the project it is in
    bobs_team = await accounts.project(bob, ada)
    kept_file = await accounts.file(bobs_team, bob)
    ada_file = await accounts.file(bobs_team, ada)  # hers, in his project: goes
    ada_chat = await accounts.chat(bobs_team, ada)
    bob_chat = await accounts.chat(bobs_team, bob)

    await accounts.delete(ada, password=PASSWORD)

    assert {p.id for p in await accounts.projects(bob)} == {
        _personal(await accounts.projects(bob)).id,
        bobs_team.id,
    }
    assert accounts.members(bobs_team) == [bob.id]
    assert set(accounts.store.tables["chats"]) == {bob_chat.id}
    assert ada_chat.id not in accounts.store.tables["chats"]
    assert set(accounts.store.tables["attachments"]) == {kept_file.id}
    assert accounts.objects() == {kept_file.object_key}
    assert ada_file.object_key not in accounts.objects()
    assert bobs_file.object_key not in accounts.objects()


async def test_the_last_active_admin_cannot_delete_their_account_another_admin_can(
    accounts: Accounts,
) -> None:
    root = await accounts.create_user("root@example.com", admin=True)

    with pytest.raises(LastAdmin, match="last active admin"):
        await accounts.delete(root, password=PASSWORD)
    assert root.id in accounts.store.tables["users"]

    other = await accounts.create_user("other@example.com", admin=True)
    await accounts.delete(root, password=PASSWORD)

    assert root.id not in accounts.store.tables["users"]
    with pytest.raises(LastAdmin, match="last active admin"):
        await accounts.delete(other, password=PASSWORD)


async def test_a_disabled_admin_does_not_count_as_another_admin(accounts: Accounts) -> None:
    root = await accounts.create_user("root@example.com", admin=True)
    idle = await accounts.create_user("idle@example.com", admin=True)
    await accounts.change_user(idle, disabled=True)

    with pytest.raises(LastAdmin, match="last active admin"):
        await accounts.delete(root, password=PASSWORD)


async def test_a_failing_commit_deletes_nothing_neither_rows_nor_objects(
    accounts: Accounts,
) -> None:
    ada, _ = await accounts.register()
    personal = _personal(await accounts.projects(ada))
    attachment = await accounts.file(personal, ada)

    with pytest.raises(ServiceUnavailable, match="unavailable"):
        await accounts.delete(ada, FailingCommit(accounts.store), password=PASSWORD)

    assert ada.id in accounts.store.tables["users"]
    assert attachment.id in accounts.store.tables["attachments"]
    assert accounts.objects() == {attachment.object_key}


async def test_objects_the_storage_fails_to_delete_are_logged_and_the_account_is_still_gone(
    accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    ada, _ = await accounts.register()
    attachment = await accounts.file(_personal(await accounts.projects(ada)), ada)
    accounts.blobs = UndeletableBlobs()

    with caplog.at_level(logging.WARNING):
        await accounts.delete(ada, password=PASSWORD)

    assert accounts.rows("users") == accounts.rows("attachments") == []
    [record] = [r for r in caplog.records if r.name.endswith("stored_objects")]
    assert attachment.object_key in record.getMessage()
    assert "a deleted account" in record.getMessage()
    assert "ada@example.com" not in caplog.text


async def test_the_usage_of_a_reply_whose_account_was_deleted_meanwhile_is_dropped_and_logged(
    accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    ada, _ = await accounts.register()
    await accounts.delete(ada, password=PASSWORD)
    record = UsageRecord.of(
        TokenUsage(prompt_tokens=3, completion_tokens=2), id=uuid.uuid4(), user_id=ada.id,
        message_id=None, model="dev/echo", provider="dev", cost_usd=0.0, cached=False,
        created_at=accounts.clock.now(),
    )  # fmt: skip

    with caplog.at_level(logging.INFO):
        await write_usage_retrying(
            accounts.uow(), lambda uow: uow.usage.add(record), attempts=3, backoff_s=0
        )

    assert accounts.rows("usage_records") == []
    assert any("account was deleted" in r.getMessage() for r in caplog.records)
