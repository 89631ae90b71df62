"""Everything a request needs, built once in the app's lifespan and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bytespike.accounts.device import DeviceSignIn, SignInPolicy
from bytespike.accounts.keys import KeyLookup
from bytespike.accounts.services import Services
from bytespike.billing.service import Billing
from bytespike.billing.shared import SharedLimits
from bytespike.config import Settings
from bytespike.gateway.catalogue import Catalogue
from bytespike.gateway.routing import Router
from bytespike.providers.client import Upstreams
from bytespike.store.accounts import Accounts
from bytespike.store.db import Database
from bytespike.store.redis import RedisLink
from bytespike.telemetry.metrics import Telemetry

if TYPE_CHECKING:
    from bytespike.tasks.service import Tasks


@dataclass
class State:
    settings: Settings
    catalogue: Catalogue
    db: Database
    accounts: Accounts
    keys: KeyLookup
    billing: Billing
    router: Router
    upstreams: Upstreams
    telemetry: Telemetry
    sign_in: DeviceSignIn
    services: Services
    demo: bool = False
    tasks: Tasks = None  # type: ignore[assignment]  # set by build(): it needs the state itself
    link: RedisLink | None = None

    @classmethod
    def build(cls, settings: Settings, *, demo: bool = False, local: bool = False) -> State:
        """``local``: this process is the only gateway on its database, so wallets decide in memory."""
        db = Database(settings.database_url)
        link = RedisLink(settings.redis_url) if settings.redis_url else None
        accounts = Accounts(db, announce=link.publish_key_change if link is not None else None)
        catalogue = Catalogue(settings)
        router = Router(settings)
        shared = (lambda hold_seconds: SharedLimits(link, db, hold_seconds)) if link is not None else None
        billing = Billing(db, catalogue, settings.default_limits, local=local and link is None, shared=shared,
                          redis_policy=settings.redis_policy)
        from bytespike.tasks.service import Tasks

        state = cls(
            settings=settings,
            catalogue=catalogue,
            db=db,
            accounts=accounts,
            keys=KeyLookup(db, accounts, link=link),
            billing=billing,
            router=router,
            upstreams=Upstreams(settings.providers),
            telemetry=Telemetry(settings, router),
            sign_in=DeviceSignIn(accounts, SignInPolicy(group=settings.sign_in_group)),
            services=Services(db, settings, billing, accounts),
            demo=demo,
            link=link,
        )
        state.tasks = Tasks(db, settings.tasks, state)
        return state

    async def start(self) -> None:
        if self.link is not None:
            await self.link.start()
        await self.billing.start()

    async def close(self) -> None:
        await self.billing.stop()
        if self.link is not None:
            await self.link.close()
        self.telemetry.close()
        await self.upstreams.close()
        self.keys.close()
        await self.db.close()
