"""A round trip through the pinned hcloud SDK over every endpoint, errors
included, with every response validated against the OpenAPI spec."""

from __future__ import annotations

import warnings

import hcloud
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hcloud.firewalls import FirewallResource, FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import Server
from hcloud.ssh_keys import SSHKey

from sim.server import SimulatorServer
from tests.sim.conftest import OpenApi, fast_client


def new_public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode()


def api_error(call: object) -> hcloud.APIException:
    with pytest.raises(hcloud.APIException) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_catalog(client: hcloud.Client) -> None:
    types = client.server_types.get_all()
    assert {"cx23", "cpx22", "cax11"} <= {t.name for t in types}
    cx23 = client.server_types.get_by_name("cx23")
    assert cx23 is not None and cx23.architecture == "x86"
    assert all(loc.available and loc.recommended for loc in cx23.locations)
    assert client.server_types.get_by_id(cx23.id).name == "cx23"
    assert {loc.name for loc in client.locations.get_all()} == {
        "fsn1", "nbg1", "hel1", "ash", "hil", "sin"
    }  # fmt: skip
    fsn1 = client.locations.get_by_name("fsn1")
    assert fsn1 is not None and client.locations.get_by_id(fsn1.id).city == "Falkenstein"
    image = client.images.get_by_name_and_architecture("debian-12", "arm")
    assert image is not None and image.architecture == "arm"
    assert client.images.get_by_id(image.id).name == "debian-12"
    assert {i.name for i in client.images.get_all(type=["system"])} == {"debian-12", "ubuntu-24.04"}
    assert api_error(lambda: client.server_types.get_by_id(1)).code == "not_found"
    assert api_error(lambda: client.locations.get_by_id(999)).code == "not_found"
    assert api_error(lambda: client.images.get_by_id(1)).code == "not_found"


def test_ssh_keys(client: hcloud.Client) -> None:
    public = new_public_key()
    key = client.ssh_keys.create("ops", public, labels={"team": "ops"})
    assert key.fingerprint and key.fingerprint.count(":") == 15
    assert client.ssh_keys.get_by_id(key.id).public_key == public
    assert client.ssh_keys.get_by_fingerprint(key.fingerprint).id == key.id
    assert client.ssh_keys.get_by_name("ops").id == key.id
    assert [k.id for k in client.ssh_keys.get_all(label_selector="team=ops")] == [key.id]
    duplicate_name = api_error(lambda: client.ssh_keys.create("ops", new_public_key()))
    assert duplicate_name.code == "uniqueness_error"
    assert duplicate_name.details == {"fields": [{"name": "name"}]}
    duplicate_key = api_error(lambda: client.ssh_keys.create("other", public))
    assert duplicate_key.code == "uniqueness_error"
    assert duplicate_key.details == {"fields": [{"name": "public_key"}]}
    assert (
        api_error(lambda: client.ssh_keys.create("bad", "ssh-ed25519 nope")).code == "invalid_input"
    )
    updated = client.ssh_keys.update(key, name="ops2", labels={"team": "sre"})
    assert (updated.name, updated.labels) == ("ops2", {"team": "sre"})
    assert client.ssh_keys.delete(key) is True
    assert api_error(lambda: client.ssh_keys.get_by_id(key.id)).code == "not_found"


def test_servers_lifecycle_and_actions(client: hcloud.Client, sim: SimulatorServer) -> None:
    key = client.ssh_keys.create("k", new_public_key())
    created = client.servers.create(
        "web-1",
        server_type=ServerType(name="cx23"),
        image=Image(name="debian-12"),
        location=Location(name="nbg1"),
        ssh_keys=[SSHKey(id=key.id)],
        labels={"rachel-cloud/managed": "true", "n": "1"},
        user_data="#cloud-config\n",
    )
    server = created.server
    assert server.status == "initializing" and created.action.command == "create_server"
    assert created.root_password is None  # an SSH key was given
    assert created.action.status == "running"
    assert [a.command for a in created.next_actions] == ["start_server"]
    assert server.public_net.ipv4.ip.startswith("127.")
    assert server.public_net.ipv6.ip.startswith("2001:db8:")
    created.action.wait_until_finished()
    server = client.servers.get_by_id(server.id)
    assert server.status == "running" and server.location.name == "nbg1"

    # Power actions, each finishing and moving the status.
    for method, status in (
        (server.power_off, "off"),
        (server.power_on, "running"),
        (server.shutdown, "off"),
        (server.power_on, "running"),
        (server.reboot, "running"),
        (server.reset, "running"),
    ):
        action = method()
        action.wait_until_finished()
        assert client.servers.get_by_id(server.id).status == status, method

    # Listing: label selectors, filters, sorting, pagination.
    second = client.servers.create(
        "web-2", server_type=ServerType(name="cax11"), image=Image(name="debian-12")
    )
    assert second.root_password  # no SSH key: Hetzner returns a password
    second.action.wait_until_finished()
    assert [s.name for s in client.servers.get_all(label_selector="n in (1,2)")] == ["web-1"]
    assert [s.name for s in client.servers.get_all(label_selector="!n")] == ["web-2"]
    by_name = client.request("GET", "/servers", params={"sort": ["name:desc", "id"]})
    assert [s["name"] for s in by_name["servers"]] == ["web-2", "web-1"]
    assert client.servers.get_by_name("web-2").id == second.server.id
    page = client.servers.get_list(page=2, per_page=1)
    assert [s.name for s in page.servers] == ["web-2"]
    assert page.meta.pagination.total_entries == 2 and page.meta.pagination.previous_page == 1
    assert len(client.servers.get_all(status=["running"])) == 2

    # Update name and labels.
    renamed = client.servers.update(second.server, name="web-3", labels={"n": "3"})
    assert (renamed.name, renamed.labels) == ("web-3", {"n": "3"})

    # Actions: global get and list by ids, per-server and the servers scope.
    action_ids = [a.id for a in server.get_actions()]
    assert len(action_ids) >= 7
    assert client.actions.get_by_id(created.action.id).status == "success"
    assert client.servers.actions.get_by_id(created.action.id).command == "create_server"
    assert len(client.servers.actions.get_all(status=["success"])) >= 8
    one = client.request("GET", f"/servers/{server.id}/actions/{action_ids[0]}")
    assert one["action"]["id"] == action_ids[0]
    listed = client.request("GET", "/actions", params={"id": action_ids[:2]})
    assert [a["id"] for a in listed["actions"]] == action_ids[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # The unfiltered /actions list is gone from the API; the spec requires `id`.
        assert api_error(client.actions.get_all).code == "invalid_input"

    # Errors.
    dup = api_error(
        lambda: client.servers.create(
            "web-1", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
        )
    )
    assert (dup.code, dup.details) == ("uniqueness_error", {"fields": [{"name": "name"}]})
    too_big = api_error(
        lambda: client.servers.create(
            "big",
            server_type=ServerType(name="cx23"),
            image=Image(name="debian-12"),
            user_data="#cloud-config\n" + "#" * (32 * 1024),
        )
    )
    assert too_big.code == "invalid_input"
    assert too_big.details["fields"][0]["name"] == "user_data"
    for kwargs in (
        {"server_type": ServerType(name="cx999"), "image": Image(name="debian-12")},
        {"server_type": ServerType(name="cx23"), "image": Image(name="windows")},
    ):
        assert api_error(lambda kw=kwargs: client.servers.create("x", **kw)).code == "invalid_input"
    unavailable = api_error(
        lambda: client.servers.create(
            "x",
            server_type=ServerType(name="cx23"),
            image=Image(name="debian-12"),
            location=Location(name="ash"),
        )
    )
    assert unavailable.code == "resource_unavailable"
    assert (
        api_error(
            lambda: client.servers.create(
                "bad_name!", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
            )
        ).code
        == "invalid_input"
    )
    assert (
        api_error(lambda: client.servers.get_all(label_selector="a in (")).code == "invalid_input"
    )
    assert api_error(lambda: client.servers.get_by_id(1)).code == "not_found"

    # Delete: an action, then the server is gone.
    deleted = client.servers.delete(server)
    assert deleted.command == "delete_server"
    deleted.wait_until_finished()
    assert api_error(lambda: client.servers.get_by_id(server.id)).code == "not_found"
    assert sim.vps(server.id) is None


def test_firewalls(client: hcloud.Client) -> None:
    ssh_rule = FirewallRule(
        direction="in", protocol="tcp", port="22", source_ips=["0.0.0.0/0", "::/0"],
        description="ssh",
    )  # fmt: skip
    server = client.servers.create(
        "fw-target", server_type=ServerType(name="cpx22"), image=Image(name="ubuntu-24.04"),
        labels={"role": "vps"},
    )  # fmt: skip
    server.action.wait_until_finished()
    created = client.firewalls.create(
        "rachel-ssh",
        rules=[ssh_rule],
        labels={"rachel-cloud/managed": "true"},
        resources=[FirewallResource(type="label_selector", label_selector=_selector("role=vps"))],
    )
    firewall = created.firewall
    for action in created.actions:
        action.wait_until_finished()
    assert client.firewalls.get_by_name("rachel-ssh").id == firewall.id
    assert [f.id for f in client.firewalls.get_all(label_selector="rachel-cloud/managed")] == [
        firewall.id
    ]
    fetched = client.firewalls.get_by_id(firewall.id)
    assert fetched.rules[0].port == "22"
    assert fetched.applied_to[0].applied_to_resources[0].server.id == server.server.id
    reloaded = client.servers.get_by_id(server.server.id)
    assert [f.firewall.id for f in reloaded.public_net.firewalls] == [firewall.id]

    https = FirewallRule(direction="in", protocol="tcp", port="443", source_ips=["0.0.0.0/0"])
    for action in client.firewalls.set_rules(firewall, [ssh_rule, https]):
        action.wait_until_finished()
    assert len(client.firewalls.get_by_id(firewall.id).rules) == 2
    direct = FirewallResource(type="server", server=server.server)
    for action in client.firewalls.apply_to_resources(firewall, [direct]):
        action.wait_until_finished()
    assert api_error(lambda: client.firewalls.apply_to_resources(firewall, [direct])).code == (
        "invalid_input"
    )
    for action in client.firewalls.remove_from_resources(firewall, [direct]):
        action.wait_until_finished()
    firewall_actions = client.firewalls.actions.get_all()
    assert client.firewalls.actions.get_by_id(firewall_actions[0].id).status == "success"
    scoped = client.request("GET", f"/firewalls/{firewall.id}/actions/{firewall_actions[0].id}")
    assert scoped["action"]["command"] == "set_firewall_rules"
    assert client.firewalls.get_actions(firewall)
    renamed = client.firewalls.update(firewall, name="rachel-ssh-2")
    assert renamed.name == "rachel-ssh-2"

    assert api_error(lambda: client.firewalls.create("rachel-ssh-2")).code == "uniqueness_error"
    bad_rule = FirewallRule(direction="in", protocol="tcp", source_ips=["0.0.0.0/0"])
    assert api_error(lambda: client.firewalls.create("x", rules=[bad_rule])).code == "invalid_input"
    assert client.firewalls.delete(firewall) is True
    assert api_error(lambda: client.firewalls.get_by_id(firewall.id)).code == "not_found"


def _selector(text: str) -> object:
    from hcloud.firewalls import FirewallResourceLabelSelector

    return FirewallResourceLabelSelector(selector=text)


def test_snapshot_images(client: hcloud.Client, sim: SimulatorServer) -> None:
    source = client.servers.create(
        "snap-source", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
        location=Location(name="fsn1"),
    )  # fmt: skip
    source.action.wait_until_finished()
    client.servers.shutdown(source.server).wait_until_finished()
    made = client.servers.create_image(
        source.server, description="rachel8 63f162e", labels={"rachel-cloud/image": "true"}
    )
    assert (made.image.type, made.image.status, made.image.name) == ("snapshot", "creating", None)
    assert made.image.created_from.id == source.server.id and made.image.image_size is None
    assert made.action.command == "create_image"
    made.action.wait_until_finished()
    image = client.images.get_by_id(made.image.id)
    assert (image.status, image.disk_size, image.os_flavor, image.architecture) == (
        "available", 40, "ubuntu", "x86"
    )  # fmt: skip
    assert image.image_size and image.image_size > 0 and image.description == "rachel8 63f162e"
    snapshots = client.images.get_all(type=["snapshot"], label_selector="rachel-cloud/image")
    assert [i.id for i in snapshots] == [image.id]
    assert client.images.get_all(type=["snapshot"], label_selector="other") == []
    assert image.id not in {i.id for i in client.images.get_all(name="ubuntu-24.04")}
    by_name = client.request("GET", "/images", params={"sort": "name:desc", "type": "snapshot"})
    assert [i["id"] for i in by_name["images"]] == [image.id]
    updated = client.images.update(image, description="current", labels={"commit": "63f162e"})
    assert (updated.description, updated.labels) == ("current", {"commit": "63f162e"})

    # A server from the snapshot (by id), on a type with at least its disk.
    copy = client.servers.create("snap-copy", server_type=ServerType(name="cx33"), image=image)
    assert copy.server.image.id == image.id and copy.server.image.type == "snapshot"
    copy.action.wait_until_finished()
    client.servers.power_off(copy.server).wait_until_finished()
    assert client.servers.get_by_id(copy.server.id).status == "off"

    # Bad input.
    def create(server_type: str, image_ref: Image) -> object:
        return lambda: client.servers.create("x", server_type=ServerType(name=server_type),
                                             image=image_ref)  # fmt: skip

    assert api_error(create("cax11", image)).code == "invalid_input"  # an x86 disk on arm
    assert api_error(create("cx23", Image(id=999_999_999))).code == "invalid_input"
    system = client.images.get_by_name_and_architecture("debian-12", "x86")
    assert api_error(lambda: client.images.delete(system)).code == "forbidden"
    assert api_error(lambda: client.images.update(system, description="x")).code == "forbidden"
    assert api_error(lambda: client.servers.create_image(Server(id=1))).code == "not_found"
    bad_type = api_error(lambda: client.servers.create_image(source.server, type="backup"))
    assert bad_type.code == "invalid_input"  # backups are not enabled
    bad_status = api_error(lambda: client.request("GET", "/images", params={"status": "gone"}))
    assert bad_status.code == "invalid_input"

    assert client.images.delete(image) is True
    assert api_error(lambda: client.images.get_by_id(image.id)).code == "not_found"
    assert api_error(lambda: client.images.delete(image)).code == "not_found"


def test_wrong_token_is_unauthorized(sim: SimulatorServer, openapi: OpenApi) -> None:
    bad = fast_client(sim, openapi, token="wrong")
    error = api_error(bad.servers.get_all)
    assert error.code == "unauthorized"
    assert error.correlation_id


def test_every_operation_was_validated(openapi: OpenApi) -> None:
    """Runs last in this module: the tests above covered every simulated operation."""
    from sim.app import API_ROUTES

    covered = {(m, t) for m, t, _ in openapi.seen}
    missing = [(r.method, r.template) for r in API_ROUTES if (r.method, r.template) not in covered]
    assert not missing, f"operations never exercised through the SDK: {missing}"
    assert any(status >= 400 for _, _, status in openapi.seen)
