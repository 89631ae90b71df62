"""Async tasks at ``/v1/tasks``: durable queued work run through the synchronous endpoints, with
leases, retries, deadlines, signed webhooks and retention (see docs/tasks.md)."""
