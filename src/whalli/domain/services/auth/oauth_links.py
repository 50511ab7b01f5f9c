"""Use cases: the provider accounts linked to one's own account, and unlinking one."""

from __future__ import annotations

from whalli.domain.model.errors import ApiKeyNotAllowed, Conflict, NotFound
from whalli.domain.model.oauth import OAuthIdentity, OAuthProviderName
from whalli.domain.model.principal import Principal
from whalli.ports.unit_of_work import UnitOfWork

LAST_SIGN_IN = (
    "This is the account's only way to sign in (it has no password and no other provider): "
    "link another provider first."
)


class LastSignInMethod(Conflict):
    code = "last_sign_in_method"
    default_message = LAST_SIGN_IN


class ProviderNotLinked(NotFound):
    code = "provider_not_linked"
    default_message = "No account of that provider is linked to yours."


class OAuthLinks:
    """The caller's links to provider accounts (``CompleteOAuth`` adds them).

    Rules:
    - ``list``: the caller's links, oldest first; any credential may read them;
    - ``unlink``: removes every link of ``provider`` from the caller's account; only a session
      may (an API key: ``ApiKeyNotAllowed``, 403), since it changes how the account is entered;
      nothing linked: ``ProviderNotLinked`` (404); refused (``LastSignInMethod``, 409) when the
      account would be left with no way in: no password and no link to another provider. The
      account's row is locked first, so two unlinks of an account's two providers at once
      cannot both pass that check.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def list(self, principal: Principal) -> list[OAuthIdentity]:
        async with self._uow as uow:
            return await uow.oauth_identities.list_for_user(principal.user_id)

    async def unlink(self, principal: Principal, provider: OAuthProviderName) -> None:
        if principal.session_id is None:
            raise ApiKeyNotAllowed()
        async with self._uow as uow:
            user = await uow.users.get_for_update(principal.user_id)
            links = await uow.oauth_identities.list_for_user(user.id)
            if not any(link.provider is provider for link in links):
                raise ProviderNotLinked()
            others = [link for link in links if link.provider is not provider]
            if user.password_hash is None and not others:
                raise LastSignInMethod()
            await uow.oauth_identities.remove(user.id, provider)
            await uow.commit()
