"""Test data builders (real rows in the real test database)."""

from __future__ import annotations

import itertools

from core.models import Customer, Server, Subscription

_seq = itertools.count(1)


def customer(**fields: object) -> Customer:
    n = next(_seq)
    values: dict[str, object] = {"external_id": f"cus_{n:05d}", "email": f"c{n}@example.com"}
    values.update(fields)
    return Customer.create(**values)


def subscription(owner: Customer, status: str = "active", **fields: object) -> Subscription:
    return Subscription.create(customer=owner, status=status, **fields)


def server(owner: Customer | None = None, **fields: object) -> Server:
    values: dict[str, object] = {
        "customer": owner or customer(),
        "location": "fsn1",
        "server_type": "cx23",
        "image": "debian-12",
    }
    values.update(fields)
    return Server.create(**values)
