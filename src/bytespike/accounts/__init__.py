"""People, organizations and their money, as services the CLI, the admin API and the console share.

``services.Services`` builds them all (``state.services`` in the gateway). Every call takes an
``errors.Actor``: an operator (``Actor.operator(name)``) may act on any account; a signed-in person
(``Actor.person(user_id, email)``) acts on the wallet they spend from, with their role's rights
(``access.py``). Errors are ``errors.Invalid`` (400, names the field), ``Forbidden`` (403),
``NotFound`` (404), ``Conflict`` (409), ``Throttled`` (429), ``NotConfigured``/``Unavailable``.

- ``people``: sign_up, sign_in (throttled), set_password, get, page
- ``orgs``: create, show, members, add_member, remove_member, invite, invitation, accept
- ``wallets``: topup (operators), show (the ``wallet show --json`` object), ledger (paginated)
- ``keys``: create (group policy per kind of account), page, get, revoke
- ``redeem_codes``: create (operators), redeem, page
- ``payments`` (None without Stripe): checkout, webhook
- ``usage``: summary (the ``usage --json`` object), daily (per day and model), records (paginated)
- ``audit``: page (operators); every change above writes its entry in its own transaction
"""
