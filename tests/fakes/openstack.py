"""Contract fake of OpenStack compute (Nova v2.1), network (Neutron v2.0) and image (Glance v2) APIs.

Written from the published API references (docs.openstack.org/api-ref/{compute,network,image}) for the
calls `slicebed provision` makes: version discovery documents; Glance ``GET /v2/images[/{id}]``; Nova
flavors, key pairs (``/os-keypairs``) and servers (create with tags, ``GET /servers/detail`` filtered by
``name`` regex and ``tags``, delete, the ``os-getConsoleOutput`` action with cloud-init's host-key block);
Neutron networks, subnets, routers (interfaces), ports, floating IPs (reachable only through a router),
security groups and rules, with the tag extension (``PUT /{resource}/{id}/tags``, ``?tags=`` all-of
filter). Every request must carry an ``X-Auth-Token`` that the real Keystone accepts (checked through
``validate``); errors use each service's error bodies (Nova ``{"itemNotFound": {...}}``, Neutron
``{"NeutronError": {...}}``). Servers go BUILD -> ACTIVE on the second read; deleting a network or subnet
that still has ports, a router with interfaces or a security group still used by a server is a 409
Conflict as in Neutron.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import uuid
from collections.abc import Callable
from typing import Any

import paramiko

from fakes.http import HttpError, JsonServer, Request, Response

NOVA_MAX_MICROVERSION = "2.96"
ID = "(?P<id>[0-9a-zA-Z._-]+)"
NEUTRON_RESOURCES = {"networks": "network", "subnets": "subnet", "security-groups": "security_group",
                     "security-group-rules": "security_group_rule", "routers": "router", "floatingips": "floatingip",
                     "ports": "port"}


class FakeOpenStack(JsonServer):
    """Nova, Neutron and Glance under ``/compute``, ``/network`` and ``/image`` of one loopback server."""

    def __init__(self, validate: Callable[[str], bool], project_id: str) -> None:
        super().__init__()
        self.validate = validate
        self.project_id = project_id
        self._register()
        self.reset()

    def reset(self) -> None:
        """Forget every resource and request (a fresh cloud at the same URL)."""
        self.requests.clear()
        self.images: dict[str, dict[str, Any]] = {}
        self.flavors: dict[str, dict[str, Any]] = {}
        self.keypairs: dict[str, dict[str, Any]] = {}
        self.servers: dict[str, dict[str, Any]] = {}
        self.neutron: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in NEUTRON_RESOURCES}
        self.fail_servers: set[str] = set()
        self.silent_consoles: set[str] = set()
        self._ips = itertools.count(10)

    # -- set-up helpers ----------------------------------------------------------------------------------------
    def add_image(self, name: str) -> str:
        image_id = str(uuid.uuid4())
        self.images[image_id] = {"id": image_id, "name": name, "status": "active", "visibility": "public",
                                 "disk_format": "qcow2", "container_format": "bare", "min_disk": 0, "min_ram": 0,
                                 "size": 629145600, "tags": [], "protected": False, "os_hidden": False,
                                 "self": f"/v2/images/{image_id}", "file": f"/v2/images/{image_id}/file",
                                 "schema": "/v2/schemas/image", "created_at": "2026-01-01T00:00:00Z",
                                 "updated_at": "2026-01-01T00:00:00Z", "owner": self.project_id}
        return image_id

    def add_flavor(self, name: str, vcpus: int, ram_mib: int, disk_gb: int) -> None:
        flavor_id = str(len(self.flavors) + 1)
        self.flavors[flavor_id] = {"id": flavor_id, "name": name, "vcpus": vcpus, "ram": ram_mib, "disk": disk_gb,
                                   "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0, "rxtx_factor": 1.0,
                                   "os-flavor-access:is_public": True, "OS-FLV-DISABLED:disabled": False,
                                   "description": None, "extra_specs": {}, "links": []}

    def add_network(self, name: str, tags: list[str] | None = None, external_cidr: str | None = None) -> str:
        """A network the deployment did not create; with ``external_cidr`` a provider network with that subnet."""
        network = self._neutron_create("networks", {"name": name}, tags or [])
        if external_cidr is not None:
            network["router:external"] = True
            self._neutron_create("subnets", {"network_id": network["id"], "name": f"{name}-subnet",
                                             "cidr": external_cidr, "ip_version": 4}, [])
        return network["id"]

    # -- plumbing ----------------------------------------------------------------------------------------------
    def authorize(self, request: Request) -> None:
        if request.path in ("/compute", "/compute/", "/network", "/network/", "/image", "/image/"):
            return  # version documents are public
        token = request.headers.get("x-auth-token")
        if not token or not self.validate(token):
            raise HttpError(401, "The request you have made requires authentication.")

    def error_body(self, error: HttpError) -> Any:
        names = {400: "badRequest", 401: "unauthorized", 404: "itemNotFound", 409: "conflictingRequest"}
        if self.requests and self.requests[-1].path.startswith("/network"):
            return {"NeutronError": {"type": "HTTPError", "message": error.message, "detail": ""}}
        return {names.get(error.status, "computeFault"): {"code": error.status, "message": error.message}}

    def _register(self) -> None:
        compute, network, image = "/compute/v2.1", "/network/v2.0", "/image/v2"
        self.route("GET", "/compute", self._compute_versions)
        self.route("GET", compute, self._compute_version)
        self.route("GET", "/network", self._network_versions)
        self.route("GET", "/image", self._image_versions)
        self.route("GET", f"{image}/images", self._list_images)
        self.route("GET", f"{image}/images/{ID}", self._get_image)
        self.route("GET", f"{compute}/flavors/detail", lambda r: Response(200, {"flavors": list(
            self.flavors.values())}))
        self.route("GET", f"{compute}/flavors/{ID}", lambda r: Response(200, {"flavor": self._get(
            self.flavors, r, "Flavor")}))
        self.route("GET", f"{compute}/os-keypairs/{ID}", lambda r: Response(200, {"keypair": self._get(
            self.keypairs, r, "Keypair")}))
        self.route("GET", f"{compute}/os-keypairs", lambda r: Response(200, {"keypairs": [
            {"keypair": {key: k[key] for key in ("name", "public_key", "fingerprint", "type")}}
            for k in self.keypairs.values()]}))
        self.route("POST", f"{compute}/os-keypairs", self._create_keypair)
        self.route("DELETE", f"{compute}/os-keypairs/{ID}", self._delete_keypair)
        self.route("GET", f"{compute}/servers/detail", self._list_servers)
        self.route("POST", f"{compute}/servers", self._create_server)
        self.route("GET", f"{compute}/servers/{ID}", self._get_server)
        self.route("DELETE", f"{compute}/servers/{ID}", self._delete_server)
        self.route("POST", f"{compute}/servers/{ID}/action", self._server_action)
        for path, kind in NEUTRON_RESOURCES.items():
            self.route("GET", f"{network}/{path}", lambda r, path=path: self._neutron_list(path, r))
            self.route("POST", f"{network}/{path}", lambda r, path=path, kind=kind: self._neutron_post(path, kind, r))
            self.route("GET", f"{network}/{path}/{ID}", lambda r, path=path, kind=kind: Response(
                200, {kind: self._get(self.neutron[path], r, kind)}))
            self.route("DELETE", f"{network}/{path}/{ID}", lambda r, path=path: self._neutron_delete(path, r))
            self.route("PUT", f"{network}/{path}/{ID}/tags", lambda r, path=path: self._neutron_tags(path, r))

        self.route("PUT", f"{network}/routers/{ID}/add_router_interface", self._add_interface)
        self.route("PUT", f"{network}/routers/{ID}/remove_router_interface", self._remove_interface)

    def _get(self, table: dict[str, dict[str, Any]], request: Request, kind: str) -> dict[str, Any]:
        assert request.match is not None
        item = table.get(request.match["id"])
        if item is None:
            raise HttpError(404, f"{kind} {request.match['id']} could not be found.")
        return item

    # -- version discovery -------------------------------------------------------------------------------------
    def _compute_version(self, _request: Request) -> Response:
        return Response(200, {"version": self._nova_version()})

    def _compute_versions(self, _request: Request) -> Response:
        return Response(200, {"versions": [self._nova_version()]})

    def _nova_version(self) -> dict[str, Any]:
        return {"id": "v2.1", "status": "CURRENT", "version": NOVA_MAX_MICROVERSION, "min_version": "2.1",
                "updated": "2013-07-23T11:33:21Z", "links": [{"rel": "self", "href": f"{self.url}/compute/v2.1/"}]}

    def _network_versions(self, _request: Request) -> Response:
        return Response(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
            {"rel": "self", "href": f"{self.url}/network/v2.0/"}]}]})

    def _image_versions(self, _request: Request) -> Response:
        return Response(300, {"versions": [{"id": "v2.16", "status": "CURRENT", "links": [
            {"rel": "self", "href": f"{self.url}/image/v2/"}]}]})

    # -- Glance --------------------------------------------------------------------------------------------------
    def _list_images(self, request: Request) -> Response:
        names = request.query.get("name")
        images = [image for image in self.images.values() if not names or image["name"] == names[0]]
        return Response(200, {"images": images, "schema": "/v2/schemas/images", "first": "/v2/images"})

    def _get_image(self, request: Request) -> Response:
        return Response(200, self._get(self.images, request, "Image"))

    # -- Nova ----------------------------------------------------------------------------------------------------
    def _microversion(self, request: Request) -> tuple[int, int]:
        header = request.headers.get("openstack-api-version", "compute 2.1").split()[-1]
        if request.headers.get("x-openstack-nova-api-version"):
            header = request.headers["x-openstack-nova-api-version"]
        major, minor = (int(part) for part in header.split("."))
        if (major, minor) > tuple(int(part) for part in NOVA_MAX_MICROVERSION.split(".")):
            raise HttpError(406, f"Version {header} is not supported by the API.")
        return major, minor

    def _create_keypair(self, request: Request) -> Response:
        body = (request.body or {}).get("keypair")
        if not isinstance(body, dict) or not re.fullmatch(r"[A-Za-z0-9 _.@-]{1,255}", str(body.get("name", ""))):
            raise HttpError(400, "Invalid input for field/attribute keypair.")
        if body["name"] in self.keypairs:
            raise HttpError(409, f"Key pair '{body['name']}' already exists.")
        public_key = body.get("public_key")
        if self._microversion(request) >= (2, 92) and not public_key:
            raise HttpError(400, "Invalid input for field/attribute keypair: 'public_key' is a required property")
        if not public_key or not public_key.startswith(("ssh-", "ecdsa-")):
            raise HttpError(400, "Keypair data is invalid: failed to generate fingerprint")
        keypair = {"name": body["name"], "public_key": public_key, "fingerprint": "9f:0c:aa:00", "type": "ssh",
                   "user_id": "fake-user", "created_at": "2026-01-01T00:00:00.000000", "id": len(self.keypairs) + 1,
                   "deleted": False}
        self.keypairs[body["name"]] = keypair
        return Response(200, {"keypair": keypair})

    def _delete_keypair(self, request: Request) -> Response:
        keypair = self._get(self.keypairs, request, "Keypair")
        del self.keypairs[keypair["name"]]
        return Response(202)

    def _create_server(self, request: Request) -> Response:
        version = self._microversion(request)
        body = (request.body or {}).get("server")
        if not isinstance(body, dict):
            raise HttpError(400, "Invalid input: 'server' is a required property")
        for required in ("name", "imageRef", "flavorRef"):
            if not body.get(required):
                raise HttpError(400, f"Invalid input for field/attribute server: '{required}' is a required property")
        if body["imageRef"] not in self.images:
            raise HttpError(400, f"Image {body['imageRef']} could not be found.")
        if body["flavorRef"] not in self.flavors:
            raise HttpError(400, f"Flavor {body['flavorRef']} could not be found.")
        if body.get("key_name") and body["key_name"] not in self.keypairs:
            raise HttpError(400, f"Invalid key_name provided: {body['key_name']}")
        if "tags" in body and version < (2, 52):
            raise HttpError(400, "Additional properties are not allowed ('tags' was unexpected)")
        networks = body.get("networks")
        if version >= (2, 37) and networks is None:
            raise HttpError(400, "Invalid input: 'networks' is a required property")
        addresses = {}
        for entry in networks or []:
            network = self.neutron["networks"].get(entry.get("uuid", ""))
            if network is None:
                raise HttpError(400, f"Network {entry.get('uuid')} could not be found.")
            subnets = [s for s in self.neutron["subnets"].values() if s["network_id"] == network["id"]]
            if not subnets:
                raise HttpError(400, f"Network {network['id']} requires a subnet in order to boot instances on.")
            port = self._port(network["id"], subnets[0], "compute:nova")
            addresses[network["name"]] = [{"addr": port["fixed_ips"][0]["ip_address"], "version": 4,
                                          "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]}]
        groups = [group["name"] for group in body.get("security_groups", [{"name": "default"}])]
        known = {group["name"] for group in self.neutron["security-groups"].values()} | {"default"}
        missing = [name for name in groups if name not in known]
        if missing:
            raise HttpError(400, f"Security group {missing[0]} not found for project {self.project_id}.")
        server_id = str(uuid.uuid4())
        for network_addresses in addresses.values():  # the ports Nova created are the server's
            port = next(p for p in self.neutron["ports"].values()
                        if p["fixed_ips"][0]["ip_address"] == network_addresses[0]["addr"])
            port["device_id"] = server_id
        self.servers[server_id] = {
            "id": server_id, "name": body["name"], "status": "BUILD", "tenant_id": self.project_id,
            "user_id": "fake-user", "metadata": body.get("metadata", {}), "tags": body.get("tags", []),
            "image": {"id": body["imageRef"]}, "flavor": {"original_name": self.flavors[body["flavorRef"]]["name"]},
            "key_name": body.get("key_name"), "addresses": addresses, "created": "2026-01-01T00:00:00Z",
            "updated": "2026-01-01T00:00:00Z", "security_groups": [{"name": name} for name in groups],
            "OS-EXT-STS:vm_state": "building", "OS-EXT-STS:task_state": "spawning", "OS-EXT-STS:power_state": 0,
            "accessIPv4": "", "accessIPv6": "", "hostId": "", "progress": 0, "links": [],
            "_reads": 0, "_console_reads": 0,
            "_host_key": f"ecdsa-sha2-nistp256 {paramiko.ECDSAKey.generate(bits=256).get_base64()}",
        }
        return Response(202, {"server": {"id": server_id, "links": [], "OS-DCF:diskConfig": "MANUAL",
                                         "security_groups": [{"name": name} for name in groups],
                                         "adminPass": "not-used"}})

    def _show(self, server: dict[str, Any]) -> dict[str, Any]:
        """The server as Nova reports it now; the second read finds a server ACTIVE (or ERROR if told so)."""
        server["_reads"] += 1
        if server["status"] == "BUILD" and server["_reads"] >= 2:
            failed = server["name"] in self.fail_servers
            server["status"] = "ERROR" if failed else "ACTIVE"
            server["OS-EXT-STS:vm_state"] = "error" if failed else "active"
            server["OS-EXT-STS:task_state"] = None
            server["OS-EXT-STS:power_state"] = 0 if failed else 1
        return {key: value for key, value in server.items() if not key.startswith("_")}

    def _list_servers(self, request: Request) -> Response:
        self._microversion(request)
        name = request.query.get("name", [None])[0]
        tags = set(",".join(request.query.get("tags", [])).split(",")) - {""}
        found = [self._show(server) for server in self.servers.values()
                 if (name is None or re.search(name, server["name"])) and tags <= set(server["tags"])]
        return Response(200, {"servers": found})

    def _get_server(self, request: Request) -> Response:
        return Response(200, {"server": self._show(self._get(self.servers, request, "Instance"))})

    def _server_action(self, request: Request) -> Response:
        """``os-getConsoleOutput``: cloud-init prints the host keys a while after the server is ACTIVE (from the
        second console read on)."""
        server = self._get(self.servers, request, "Instance")
        if set(request.body or {}) != {"os-getConsoleOutput"}:
            raise HttpError(400, f"Invalid server action {sorted(request.body or {})}.")
        output = "[    0.000000] Linux version 6.8.0-45-generic\nCloud-init v. 24.1 running 'modules:final'\n"
        server["_console_reads"] += server["status"] == "ACTIVE"
        if server["_console_reads"] >= 2 and server["name"] not in self.silent_consoles:
            output += (f"-----BEGIN SSH HOST KEY KEYS-----\n{server['_host_key']} root@{server['name']}\n"
                       "-----END SSH HOST KEY KEYS-----\n")
        return Response(200, {"output": output})

    def _delete_server(self, request: Request) -> Response:
        server = self._get(self.servers, request, "Instance")
        for port in [p for p in self.neutron["ports"].values() if p["device_id"] == server["id"]]:
            self._drop_port(port)
        del self.servers[server["id"]]
        return Response(204)

    def _port(self, network_id: str, subnet: dict[str, Any], owner: str, address: str | None = None) -> dict[str, Any]:
        """A port on ``subnet`` (the next free address, or ``address``)."""
        if address is None:
            address = str(ipaddress.ip_network(subnet["cidr"])[next(self._ips)])
        return self._neutron_create("ports", {
            "network_id": network_id, "device_id": "", "device_owner": owner, "name": "",
            "mac_address": f"fa:16:3e:00:00:{len(self.neutron['ports']) % 256:02x}",
            "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": address}], "admin_state_up": True,
            "status": "ACTIVE"}, [])

    def _drop_port(self, port: dict[str, Any]) -> None:
        """Delete a port; floating IPs on it are disassociated, as in Neutron."""
        for floating in self.neutron["floatingips"].values():
            if floating["port_id"] == port["id"]:
                floating.update(port_id=None, fixed_ip_address=None, status="DOWN")
        del self.neutron["ports"][port["id"]]

    def _add_interface(self, request: Request) -> Response:
        router = self._get(self.neutron["routers"], request, "Router")
        subnet = self.neutron["subnets"].get((request.body or {}).get("subnet_id", ""))
        if subnet is None:
            raise HttpError(404, "Subnet could not be found.")
        if any(p["device_id"] == router["id"] and p["network_id"] == subnet["network_id"]
               for p in self.neutron["ports"].values()):
            raise HttpError(400, f"Router already has a port on subnet {subnet['id']}.")
        port = self._port(subnet["network_id"], subnet, "network:router_interface", subnet["gateway_ip"])
        port["device_id"] = router["id"]
        return Response(200, {"id": router["id"], "subnet_id": subnet["id"], "subnet_ids": [subnet["id"]],
                              "port_id": port["id"], "network_id": subnet["network_id"],
                              "tenant_id": self.project_id, "project_id": self.project_id})

    def _remove_interface(self, request: Request) -> Response:
        router = self._get(self.neutron["routers"], request, "Router")
        port = self.neutron["ports"].get((request.body or {}).get("port_id", ""))
        if port is None or port["device_id"] != router["id"]:
            raise HttpError(404, f"Router {router['id']} does not have an interface with that port.")
        subnet_id = port["fixed_ips"][0]["subnet_id"]
        if any(f["port_id"] and self.neutron["ports"][f["port_id"]]["fixed_ips"][0]["subnet_id"] == subnet_id
               for f in self.neutron["floatingips"].values()):
            raise HttpError(409, f"Router interface for subnet {subnet_id} on router {router['id']} cannot be "
                            "deleted, as it is required by one or more floating IPs.")
        self._drop_port(port)
        return Response(200, {"id": router["id"], "subnet_id": subnet_id, "port_id": port["id"]})

    # -- Neutron -------------------------------------------------------------------------------------------------
    def _neutron_create(self, path: str, body: dict[str, Any], tags: list[str]) -> dict[str, Any]:
        item_id = str(uuid.uuid4())
        item = {"id": item_id, "tenant_id": self.project_id, "project_id": self.project_id, "tags": tags,
                "description": "", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "revision_number": 1, **body}
        if path == "networks":
            item.update(status="ACTIVE", admin_state_up=True, subnets=[], shared=False, mtu=1450,
                        **{"router:external": False})
        elif path == "subnets":
            network = self.neutron["networks"].get(body.get("network_id", ""))
            if network is None:
                raise HttpError(404, f"Network {body.get('network_id')} could not be found.")
            try:
                cidr = ipaddress.ip_network(body.get("cidr", ""))
            except ValueError:
                raise HttpError(400, f"Invalid input for cidr. Reason: '{body.get('cidr')}' is not a valid IP subnet."
                                ) from None
            if body.get("ip_version") not in (4, 6) or cidr.version != body["ip_version"]:
                raise HttpError(400, "Invalid input for operation: ip_version does not match the cidr.")
            item.update(enable_dhcp=True, gateway_ip=str(cidr[1]), allocation_pools=[
                {"start": str(cidr[2]), "end": str(cidr[-2])}], dns_nameservers=body.get("dns_nameservers", []),
                host_routes=[])
            network["subnets"].append(item_id)
        elif path == "security-groups":
            item["security_group_rules"] = []
            self.neutron[path][item_id] = item
            for ethertype in ("IPv4", "IPv6"):  # Neutron adds egress-anything rules to a new group
                self._neutron_create("security-group-rules", {
                    "security_group_id": item_id, "direction": "egress", "ethertype": ethertype, "protocol": None,
                    "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
                    "remote_group_id": None}, [])
        elif path == "security-group-rules":
            self._check_rule(body)
        elif path == "routers":
            gateway = (body.get("external_gateway_info") or {}).get("network_id")
            if gateway is not None and not self.neutron["networks"].get(gateway, {}).get("router:external"):
                raise HttpError(400, f"Network {gateway} is not a valid external network.")
            item.update(status="ACTIVE", admin_state_up=True, routes=[])
        elif path == "floatingips":
            item.update(self._floating(body))
        self.neutron[path][item_id] = item
        return item

    def _floating(self, body: dict[str, Any]) -> dict[str, Any]:
        """A floating IP's fields: reachable only through a router from the port's subnet to its network."""
        external = self.neutron["networks"].get(body.get("floating_network_id", ""))
        if external is None or not external.get("router:external"):
            raise HttpError(404, f"External network {body.get('floating_network_id')} could not be found.")
        port = self.neutron["ports"].get(body.get("port_id") or "")
        if body.get("port_id") and port is None:
            raise HttpError(404, f"Port {body['port_id']} could not be found.")
        if port is not None and not any(
                router["external_gateway_info"] and router["external_gateway_info"]["network_id"] == external["id"]
                and any(p["device_id"] == router["id"] and p["network_id"] == port["network_id"]
                        for p in self.neutron["ports"].values())
                for router in self.neutron["routers"].values()):
            raise HttpError(404, f"External network {external['id']} is not reachable from subnet "
                            f"{port['fixed_ips'][0]['subnet_id']}.")
        pool = next(s for s in self.neutron["subnets"].values() if s["network_id"] == external["id"])
        return {"floating_ip_address": str(ipaddress.ip_network(pool["cidr"])[next(self._ips)]),
                "fixed_ip_address": port["fixed_ips"][0]["ip_address"] if port else None,
                "port_id": port["id"] if port else None, "router_id": None, "status": "ACTIVE"}

    def _check_rule(self, rule: dict[str, Any]) -> None:
        if rule.get("security_group_id") not in self.neutron["security-groups"]:
            raise HttpError(404, f"Security group {rule.get('security_group_id')} does not exist")
        if rule.get("direction") not in ("ingress", "egress") or rule.get("ethertype", "IPv4") not in ("IPv4", "IPv6"):
            raise HttpError(400, "Invalid input for direction or ethertype.")
        if rule.get("protocol") not in (None, "tcp", "udp", "icmp", "any"):
            raise HttpError(400, f"Security group rule protocol {rule.get('protocol')} not supported.")
        if rule.get("remote_ip_prefix") and rule.get("remote_group_id"):
            raise HttpError(400, "Only remote_ip_prefix or remote_group_id may be provided.")
        low, high = rule.get("port_range_min"), rule.get("port_range_max")
        if (low is None) != (high is None) or (low is not None and (rule.get("protocol") not in ("tcp", "udp")
                                                                   or not 1 <= low <= high <= 65535)):
            raise HttpError(400, "For TCP/UDP protocols, port_range_min must be <= port_range_max.")
        fields = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix",
                  "remote_group_id")
        for existing in self.neutron["security-group-rules"].values():
            if existing["security_group_id"] == rule["security_group_id"] and all(
                    existing.get(name) == rule.get(name) for name in fields):
                raise HttpError(409, f"Security group rule already exists. Rule id is {existing['id']}.")

    def _neutron_post(self, path: str, kind: str, request: Request) -> Response:
        body = (request.body or {}).get(kind)
        if not isinstance(body, dict):
            raise HttpError(400, f"Resource body required: '{kind}'")
        if "tags" in body:
            raise HttpError(400, "Unrecognized attribute(s) 'tags'")  # set with PUT .../tags
        return Response(201, {kind: self._neutron_create(path, body, [])})

    def _neutron_list(self, path: str, request: Request) -> Response:
        tags = set(",".join(request.query.get("tags", [])).split(",")) - {""}
        filters = {key: values[0] for key, values in request.query.items() if key not in ("tags", "fields")}
        found = [item for item in self.neutron[path].values() if tags <= set(item["tags"])
                 and all(str(item.get(key)) == value for key, value in filters.items())]
        return Response(200, {path.replace("-", "_"): found})

    def _neutron_delete(self, path: str, request: Request) -> Response:
        item = self._get(self.neutron[path], request, NEUTRON_RESOURCES[path])
        if path == "networks" and any(p["network_id"] == item["id"] for p in self.neutron["ports"].values()):
            raise HttpError(409, f"Unable to complete operation on network {item['id']}. There are one or more "
                            "ports still in use on the network.")
        if path == "subnets" and any(p["fixed_ips"][0]["subnet_id"] == item["id"]
                                     for p in self.neutron["ports"].values()):
            raise HttpError(409, f"Unable to complete operation on subnet {item['id']}: one or more ports have an IP "
                            "allocation from this subnet.")
        if path == "routers" and any(p["device_id"] == item["id"] for p in self.neutron["ports"].values()):
            raise HttpError(409, f"Router {item['id']} still has ports.")
        if path == "security-groups" and any(
                item["name"] in (group["name"] for group in server["security_groups"])
                for server in self.servers.values()):
            raise HttpError(409, f"Security Group {item['id']} in use.")
        if path == "networks":
            for subnet_id in item["subnets"]:
                self.neutron["subnets"].pop(subnet_id, None)
        if path == "subnets" and item["network_id"] in self.neutron["networks"]:
            self.neutron["networks"][item["network_id"]]["subnets"].remove(item["id"])
        if path == "security-groups":
            for rule_id in [r["id"] for r in self.neutron["security-group-rules"].values()
                            if r["security_group_id"] == item["id"]]:
                del self.neutron["security-group-rules"][rule_id]
        del self.neutron[path][item["id"]]
        return Response(204)

    def _neutron_tags(self, path: str, request: Request) -> Response:
        item = self._get(self.neutron[path], request, NEUTRON_RESOURCES[path])
        tags = (request.body or {}).get("tags")
        if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 255 and "," not in t
                                                 for t in tags):
            raise HttpError(400, "Invalid input for tags.")
        item["tags"] = sorted(set(tags))
        return Response(200, {"tags": item["tags"]})
