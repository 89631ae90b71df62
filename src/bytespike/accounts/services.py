"""The account services, built once and shared by the CLI, the admin API and the console."""

from __future__ import annotations

from bytespike.accounts.audit import AuditLog
from bytespike.accounts.keyring import Keyring
from bytespike.accounts.orgs import Orgs
from bytespike.accounts.payments import CardPayments
from bytespike.accounts.people import People
from bytespike.accounts.redeem import RedeemCodes
from bytespike.accounts.reports import UsageReports
from bytespike.accounts.wallets import Wallets
from bytespike.billing.service import Billing
from bytespike.config import Settings
from bytespike.gateway.catalogue import Catalogue
from bytespike.store.accounts import Accounts
from bytespike.store.db import Database


class Services:
    """``billing``: the gateway's own (its live view of balances); the CLI builds a reading one."""

    def __init__(self, db: Database, settings: Settings, billing: Billing | None = None,
                 accounts: Accounts | None = None) -> None:
        self.db = db
        self.settings = settings
        self.store = accounts or Accounts(db)
        live = billing.wallet if billing is not None else None
        self.billing = billing or Billing(db, Catalogue(settings), settings.default_limits)
        self.audit = AuditLog(db)
        self.people = People(db, signup_open=settings.signup == "open")
        self.orgs = Orgs(db, self.store)
        self.wallets = Wallets(db, self.store, live)
        self.keys = Keyring(db, self.store, settings)
        self.redeem_codes = RedeemCodes(db)
        self.usage = UsageReports(db, self.store, self.billing)
        self.payments: CardPayments | None = CardPayments(db, settings.stripe) if settings.stripe else None
