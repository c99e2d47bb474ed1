"""`/ssh_keys`: create, list, get, update, delete."""

from __future__ import annotations

import asyncssh

from sim import render
from sim.engine import Simulator
from sim.errors import invalid_field, not_found, uniqueness
from sim.http import Request, Response, labels_field, list_response, parse_id, select, text_field
from sim.routes import Route
from sim.state import SshKey

_SORT = {"id": lambda k: k.id, "name": lambda k: k.name}


def fingerprint(public_key: str) -> str:
    """The MD5 fingerprint Hetzner shows (`aa:bb:...`).

    Raises:
        ApiError: invalid_input when the key cannot be parsed.
    """
    try:
        key = asyncssh.import_public_key(public_key.strip())
    except (asyncssh.KeyImportError, ValueError):
        raise invalid_field("public_key", "invalid public key") from None
    return key.get_fingerprint("md5").removeprefix("MD5:")


def _get(sim: Simulator, key_id: str) -> SshKey:
    key = sim.store.ssh_keys.get(parse_id(key_id))
    if key is None:
        raise not_found("ssh_key", key_id)
    return key


def create_ssh_key(sim: Simulator, req: Request) -> Response:
    """POST /ssh_keys."""
    body = req.json()
    name = text_field(body, "name", required=True)
    public_key = text_field(body, "public_key", required=True)
    assert name is not None and public_key is not None
    labels = labels_field(body) or {}
    print_ = fingerprint(public_key)
    if sim.store.key_named(name) is not None:
        raise uniqueness("name")
    if sim.store.key_with_fingerprint(print_) is not None:
        raise uniqueness("public_key")
    key = SshKey(sim.store.next_key_id(), name, public_key.strip(), print_, labels)
    sim.store.ssh_keys[key.id] = key
    return Response(201, {"ssh_key": render.ssh_key(key)})


def list_ssh_keys(sim: Simulator, req: Request) -> Response:
    """GET /ssh_keys."""
    keys = sorted(sim.store.ssh_keys.values(), key=lambda k: k.id)
    name = req.arg("name")
    if name is not None:
        keys = [k for k in keys if k.name == name]
    wanted = req.arg("fingerprint")
    if wanted is not None:
        keys = [k for k in keys if k.fingerprint == wanted]
    keys = select(req, keys, lambda k: k.labels)
    return list_response(req, "ssh_keys", keys, render.ssh_key, _SORT)


def show_ssh_key(sim: Simulator, req: Request, id: str) -> Response:
    """GET /ssh_keys/{id}."""
    return Response(200, {"ssh_key": render.ssh_key(_get(sim, id))})


def update_ssh_key(sim: Simulator, req: Request, id: str) -> Response:
    """PUT /ssh_keys/{id}: name and labels."""
    key = _get(sim, id)
    body = req.json()
    name = text_field(body, "name")
    labels = labels_field(body)
    if name is not None:
        if not name.strip():
            raise invalid_field("name", "must not be empty")
        other = sim.store.key_named(name)
        if other is not None and other is not key:
            raise uniqueness("name")
        key.name = name
    if labels is not None:
        key.labels = labels
    return Response(200, {"ssh_key": render.ssh_key(key)})


def delete_ssh_key(sim: Simulator, req: Request, id: str) -> Response:
    """DELETE /ssh_keys/{id}."""
    key = _get(sim, id)
    del sim.store.ssh_keys[key.id]
    return Response(204)


ROUTES = [
    Route("POST", "/ssh_keys", "create_ssh_key", create_ssh_key),
    Route("GET", "/ssh_keys", "list_ssh_keys", list_ssh_keys),
    Route("GET", "/ssh_keys/{id}", "get_ssh_key", show_ssh_key),
    Route("PUT", "/ssh_keys/{id}", "replace_ssh_key", update_ssh_key),
    Route("DELETE", "/ssh_keys/{id}", "delete_ssh_key", delete_ssh_key),
]
