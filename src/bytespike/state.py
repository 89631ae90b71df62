"""Everything a request needs, built once in the app's lifespan and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bytespike.accounts.device import DeviceSignIn, SignInPolicy
from bytespike.accounts.keys import KeyLookup
from bytespike.accounts.services import Services
from bytespike.billing.service import Billing
from bytespike.config import Settings
from bytespike.gateway.catalogue import Catalogue
from bytespike.gateway.routing import Router
from bytespike.providers.client import Upstreams
from bytespike.store.accounts import Accounts
from bytespike.store.db import Database
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

    @classmethod
    def build(cls, settings: Settings, *, demo: bool = False, local: bool = False) -> State:
        """``local``: this process is the only gateway on its database, so wallets decide in memory."""
        db = Database(settings.database_url)
        accounts = Accounts(db)
        catalogue = Catalogue(settings)
        router = Router(settings)
        billing = Billing(db, catalogue, settings.default_limits, local=local)
        from bytespike.tasks.service import Tasks

        state = cls(
            settings=settings,
            catalogue=catalogue,
            db=db,
            accounts=accounts,
            keys=KeyLookup(db, accounts),
            billing=billing,
            router=router,
            upstreams=Upstreams(settings.providers),
            telemetry=Telemetry(settings, router),
            sign_in=DeviceSignIn(accounts, SignInPolicy(group=settings.sign_in_group)),
            services=Services(db, settings, billing, accounts),
            demo=demo,
        )
        state.tasks = Tasks(db, settings.tasks, state)
        return state

    async def close(self) -> None:
        await self.billing.stop()
        self.telemetry.close()
        await self.upstreams.close()
        self.keys.close()
        await self.db.close()
