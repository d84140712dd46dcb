"""The multi-node configs in cluster/: Ray's own launcher validation, the KubeRay
manifests' shape and versions, and a scan for exposed Ray ports and credentials.

Offline and fast: nothing here talks to a cloud or starts Ray.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
LAUNCHER_CONFIGS = sorted(CLUSTER.glob("*.yaml"))

RAY_VERSION = "2.60.0"
RAY_PIN = f"ray[default,train,tune]=={RAY_VERSION}"
TORCH_PIN = "torch==2.13.0"
RAY_PORTS = (6379, 8265, 10001)


# --------------------------------------------------------------------------------------
# Ray cluster launcher configs
# --------------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)


def launcher_validate(config: dict[str, Any]) -> dict[str, Any]:
    """Validate `config` the way `ray up` does, and return the prepared config.

    `ray up` (commands._bootstrap_config) runs:
      1. prepare_config: merges the provider's shipped defaults.yaml, merges
         setup_commands into head/worker_setup_commands, checks docker, fills
         per-type min/max workers; for the `local` provider it builds the single
         node type from head_ip/worker_ips. All offline (it only reads files).
      2. provider.fillout_available_node_types_resources: on AWS this asks the
         EC2 API for instance-type sizes (credentials + network), so it is
         skipped here. Our node types state `resources` explicitly, which that
         step keeps as given.
      3. validate_config: ray-schema.json (jsonschema) plus Ray's extra checks.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_the_expected_launcher_configs_exist():
    assert {p.stem for p in LAUNCHER_CONFIGS} == {"aws", "gcp", "onprem"}


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_launcher_config_passes_ray_validation(path):
    prepared = launcher_validate(load(path))
    assert prepared["head_node_type"] in prepared["available_node_types"]


def _worker_type(config: dict[str, Any]) -> str:
    return next(k for k in config["available_node_types"] if k != config["head_node_type"])


def _set_top(key: str, value: Any) -> Callable[[dict], None]:
    return lambda c: c.__setitem__(key, value)


def _set_in_worker_type(key: str, value: Any) -> Callable[[dict], None]:
    return lambda c: c["available_node_types"][_worker_type(c)].__setitem__(key, value)


def _set_worker_gpus(value: Any) -> Callable[[dict], None]:
    return lambda c: c["available_node_types"][_worker_type(c)]["resources"].__setitem__("GPU", value)


def _drop_node_config(c: dict) -> None:
    del c["available_node_types"][_worker_type(c)]["node_config"]


def _drop_head_ip(c: dict) -> None:
    del c["provider"]["head_ip"]


def _schema_error():
    import jsonschema

    return jsonschema.ValidationError


def _click_error():
    import click

    return click.ClickException


# (config, what is broken, mutation, expected exception types (lazy))
BROKEN: list[tuple[str, str, Callable[[dict], None], Callable[[], tuple]]] = []
for _name in ("aws", "gcp", "onprem"):
    BROKEN += [
        (_name, "unknown top-level key", _set_top("max_worker", 4), lambda: (_schema_error(),)),
        (_name, "misspelled auth field", lambda c: c["auth"].__setitem__("ssh_usr", "x"), lambda: (_schema_error(),)),
        (_name, "start commands not a list", _set_top("head_start_ray_commands", "ray start --head"),
         lambda: (_schema_error(),)),
    ]
for _name in ("aws", "gcp"):
    BROKEN += [
        (_name, "max_workers as a string", _set_top("max_workers", "4"), lambda: (_schema_error(),)),
        (_name, "misspelled node-type field", _set_in_worker_type("min_worker", 0), lambda: (_schema_error(),)),
        (_name, "node-type max_workers as a string", _set_in_worker_type("max_workers", "2"),
         lambda: (_schema_error(),)),
        (_name, "GPU count as a string", _set_worker_gpus("1"), lambda: (_schema_error(),)),
        (_name, "node type without node_config", _drop_node_config, lambda: (_schema_error(),)),
    ]
BROKEN += [
    # prepare_manual compares it with the number of worker_ips before the schema runs.
    ("onprem", "max_workers as a string", _set_top("max_workers", "4"), lambda: (_schema_error(), TypeError)),
    ("onprem", "node types on the local provider",
     _set_top("available_node_types", {"x": {"resources": {}, "node_config": {}}}), lambda: (_click_error(),)),
    ("onprem", "no head_ip", _drop_head_ip, lambda: (_click_error(),)),
]


@pytest.mark.parametrize(
    "name,what,mutate,errors", BROKEN, ids=[f"{n}-{w.replace(' ', '_')}" for n, w, _, _ in BROKEN]
)
def test_broken_launcher_config_is_rejected(name, what, mutate, errors):
    config = load(CLUSTER / f"{name}.yaml")
    launcher_validate(config)  # the intact file passes ...
    mutate(config)
    with pytest.raises(errors()):  # ... the broken copy does not
        launcher_validate(config)


def _node_setups(prepared: dict[str, Any]) -> dict[str, str]:
    """Every command a node of each type runs before `ray start`, as one string.

    A node type's own worker_setup_commands replace the merged global list.
    """
    out = {}
    for name, node_type in prepared["available_node_types"].items():
        if name == prepared["head_node_type"]:
            cmds = prepared["head_setup_commands"]
        else:
            cmds = node_type.get("worker_setup_commands", prepared["worker_setup_commands"])
        out[name] = "\n".join(prepared["initialization_commands"] + list(cmds))
    # On the local provider head and workers share one node type: check both roles.
    out["<every worker>"] = "\n".join(prepared["worker_setup_commands"])
    return out


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_every_node_installs_the_same_pinned_ray_torch_and_project(path):
    prepared = launcher_validate(load(path))
    for node, setup in _node_setups(prepared).items():
        assert RAY_PIN in setup, f"{path.name}: {node} does not install {RAY_PIN}"
        assert TORCH_PIN in setup, f"{path.name}: {node} does not install {TORCH_PIN}"
        assert re.search(r"pip install -e ~/hrm\b", setup), f"{path.name}: {node} does not install the project"
        assert "python3.11" in setup, f"{path.name}: {node} does not use Python 3.11"
    assert prepared["file_mounts"]["~/hrm"] == "."
    # No other Ray version or loose pin anywhere in the file.
    text = path.read_text()
    for op, version in re.findall(r"\bray(?:\[[^\]]*\])?\s*(==|>=|<=|~=|!=|<|>)\s*([0-9][\w.]*)", text):
        assert (op, version) == ("==", RAY_VERSION), f"{path.name}: ray pinned as {op}{version}"


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_start_commands_keep_dashboard_local_and_auth_on(path):
    prepared = launcher_validate(load(path))
    head = " ".join(prepared["head_start_ray_commands"])
    worker = " ".join(prepared["worker_start_ray_commands"])
    for flag in (
        "ray start --head",
        "--port=6379",
        "--dashboard-host=127.0.0.1",
        "--autoscaling-config=~/ray_bootstrap_config.yaml",
        "--object-store-memory=",
    ):
        assert flag in head, f"{path.name}: head start lacks {flag}"
    assert "0.0.0.0" not in head
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker
    assert "--object-store-memory=" in worker
    for cmds in (head, worker):
        assert "RAY_AUTH_MODE=token" in cmds
    # The token file every node (and the laptop) shares.
    assert prepared["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


@pytest.mark.parametrize("name", ["aws", "gcp"])
def test_cloud_configs_have_a_cpu_head_and_autoscaling_1_and_8_gpu_workers(name):
    config = load(CLUSTER / f"{name}.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] > 0
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    assert sorted(w["resources"]["GPU"] for w in workers.values()) == [1, 8]
    for w in workers.values():
        assert w["min_workers"] == 0 and 0 < w["max_workers"] <= config["max_workers"]


def test_aws_nodes_use_a_prepared_security_group():
    """A group Ray creates for itself always gets SSH open to every address, so each
    node type must name a group (created with SSH from the admin CIDR only), or the
    provider must spell its rules out (the scanner then checks them)."""
    config = load(CLUSTER / "aws.yaml")
    if "security_group" in config["provider"]:
        return
    for name, node_type in config["available_node_types"].items():
        assert node_type["node_config"].get("SecurityGroupIds"), f"{name} has no SecurityGroupIds"


# --------------------------------------------------------------------------------------
# KubeRay manifests
# --------------------------------------------------------------------------------------


def load_all(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d.get("kind") == kind]
    return doc


KUBERAY_FILES = {"raycluster.yaml": "RayCluster", "rayjob.yaml": "RayJob"}


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    m = re.fullmatch(r"(\d+)([KMGT]i?)?", str(quantity))
    assert m, quantity
    return int(m.group(1)) * units.get(m.group(2) or "", 1)


@pytest.mark.parametrize("fname,kind", KUBERAY_FILES.items())
def test_kuberay_manifest_kinds_and_ray_version(fname, kind):
    docs = load_all(KUBERAY / fname)
    assert sorted(d["kind"] for d in docs) == sorted(["PersistentVolumeClaim", kind])
    ray_doc = by_kind(docs, kind)
    assert ray_doc["apiVersion"] == "ray.io/v1"
    spec = cluster_spec(ray_doc)
    assert spec["rayVersion"] == RAY_VERSION
    images = [n["image"] for n in walk(ray_doc) if isinstance(n, dict) and "image" in n]
    assert images
    for image in images:
        assert re.fullmatch(rf"rayproject/ray:{re.escape(RAY_VERSION)}-py311(-gpu)?", image), image
    # Nothing else in the file names another Ray version.
    for version in re.findall(r"rayproject/ray:([0-9][\w.]*)", (KUBERAY / fname).read_text()):
        assert version == RAY_VERSION


@pytest.mark.parametrize("fname,kind", KUBERAY_FILES.items())
def test_kuberay_cluster_shape(fname, kind):
    docs = load_all(KUBERAY / fname)
    spec = cluster_spec(by_kind(docs, kind))
    # Head reachable only inside the cluster; token auth on.
    assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
    head_service = spec["headGroupSpec"].get("headService", {}).get("spec", {})
    assert head_service.get("type", "ClusterIP") == "ClusterIP"
    assert spec["authOptions"]["mode"] == "token"
    # Shared results claim, ReadWriteMany.
    pvc = by_kind(docs, "PersistentVolumeClaim")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    claim = pvc["metadata"]["name"]

    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    gpu_groups = 0
    for name, group in groups:
        pod = group["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        shm = volumes[mounts["/dev/shm"]]["emptyDir"]
        assert shm["medium"] == "Memory", name
        store = int(group["rayStartParams"]["object-store-memory"])
        assert store < _bytes(shm["sizeLimit"]), f"{name}: object store does not fit in /dev/shm"
        assert volumes[mounts["/results"]]["persistentVolumeClaim"]["claimName"] == claim, name
        if str(container["resources"]["limits"].get("nvidia.com/gpu", 0)) == "1":
            gpu_groups += 1
            assert container["image"].endswith("-gpu"), name
    assert gpu_groups >= 1


def test_rayjob_runs_the_tune_entrypoint_on_shared_storage():
    job = by_kind(load_all(KUBERAY / "rayjob.yaml"), "RayJob")
    entrypoint = job["spec"]["entrypoint"].split()
    assert entrypoint[:2] == ["python", "ray_jobs/tune.py"]
    assert (ROOT / entrypoint[1]).is_file()
    space = entrypoint[entrypoint.index("--space") + 1]
    assert space == "search_spaces/sudoku_extreme.yaml" and (ROOT / space).is_file()
    assert entrypoint[entrypoint.index("--storage") + 1] == "/results"
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert runtime_env["working_dir"]
    assert TORCH_PIN in runtime_env["pip"]["packages"]
    assert not any(p.startswith("ray") for p in runtime_env["pip"]["packages"]), "Ray comes from the image"


# --------------------------------------------------------------------------------------
# Security scanner: exposed Ray ports and credentials
# --------------------------------------------------------------------------------------

OPEN_CIDR = re.compile(r"(?<![\w.:])(?:(?:\d{1,3}\.){3}\d{1,3}/0|::/0)(?![\d/])")
CREDENTIALS = [
    re.compile(r"aws_secret_access_key", re.I),
    re.compile(r"aws_access_key_id\s*[=:]", re.I),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"BEGIN (?:[A-Z]+ )?PRIVATE KEY"),
    re.compile(r"\"private_key\"\s*:"),
    re.compile(r"RAY_AUTH_MODE\s*[=:]\s*[\"']?disabled", re.I),
]
ALL_WORDS = re.compile(r"(?<![\w-])(?:all|-1)(?![\w])", re.I)


def _covers(lo: int, hi: int) -> bool:
    return any(lo <= p <= hi for p in RAY_PORTS)


def _line_opens_ray_port(line: str) -> bool:
    """Text rule (comments and docs too): an open CIDR together with a Ray port, a
    range covering one, or `all` / `-1` on the same logical line."""
    if not OPEN_CIDR.search(line):
        return False
    rest = OPEN_CIDR.sub(" ", line)
    if ALL_WORDS.search(rest):
        return True
    for lo, hi in re.findall(r"(?<![\d.])(\d{1,5})\s*[-:]\s*(\d{1,5})(?![\d.])", rest):
        if _covers(int(lo), int(hi)):
            return True
    return any(re.search(rf"(?<![\d.]){p}(?![\d.])", rest) for p in RAY_PORTS)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with shell continuations (`\\` at the end, also inside comments) joined."""
    buf, start = "", 0
    for no, line in enumerate(text.splitlines(), 1):
        if not buf:
            start = no
        stripped = line.strip()
        if buf:
            stripped = stripped.lstrip("#").strip()
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        yield start, buf + stripped
        buf = ""
    if buf:
        yield start, buf


def _port_range(value: Any) -> tuple[int, int]:
    s = str(value)
    if "-" in s.lstrip("-"):
        lo, hi = s.split("-", 1)
        return int(lo), int(hi)
    return int(s), int(s)


def _structured_findings(doc: Any) -> list[str]:
    out = []
    for node in walk(doc):
        if not isinstance(node, dict):
            continue
        # AWS IpPermissions entry.
        if {"IpProtocol", "FromPort", "ToPort"} & node.keys():
            cidrs = [r.get("CidrIp") for r in node.get("IpRanges", []) if isinstance(r, dict)]
            cidrs += [r.get("CidrIpv6") for r in node.get("Ipv6Ranges", []) if isinstance(r, dict)]
            if any(c and OPEN_CIDR.fullmatch(str(c)) for c in cidrs):
                proto = str(node.get("IpProtocol", "-1")).lower()
                lo, hi = int(node.get("FromPort", -1)), int(node.get("ToPort", -1))
                if proto in ("-1", "all") or lo == -1 or _covers(lo, hi):
                    out.append(f"security-group rule opens Ray ports to the internet: {node}")
        # GCP firewall rule.
        if "sourceRanges" in node and any(OPEN_CIDR.fullmatch(str(c)) for c in node["sourceRanges"]):
            for allowed in node.get("allowed", [{"IPProtocol": "all"}]):
                ports = allowed.get("ports")
                if str(allowed.get("IPProtocol", "all")).lower() == "all" or not ports:
                    out.append(f"firewall rule opens all ports to the internet: {node}")
                elif any(_covers(*_port_range(p)) for p in ports):
                    out.append(f"firewall rule opens Ray ports to the internet: {node}")
        kind = node.get("kind")
        spec = node.get("spec") if isinstance(node.get("spec"), dict) else {}
        # Kubernetes Service reachable from outside the cluster.
        if kind == "Service" and spec.get("type") in ("LoadBalancer", "NodePort"):
            ports = [int(p.get("port", 0)) for p in spec.get("ports", [])]
            if not ports or any(p in RAY_PORTS for p in ports):
                out.append(f"{spec['type']} Service exposes Ray ports: {node.get('metadata')}")
        # KubeRay head Service type.
        if node.get("serviceType") in ("LoadBalancer", "NodePort"):
            out.append(f"Ray head Service of type {node['serviceType']}")
        # Ingress to a Ray port or the head Service.
        if kind == "Ingress":
            for backend in walk(spec):
                if isinstance(backend, dict) and "service" in backend and isinstance(backend["service"], dict):
                    svc = backend["service"]
                    port = svc.get("port", {})
                    if port.get("number") in RAY_PORTS or port.get("name") in ("dashboard", "gcs-server", "client") \
                            or "head-svc" in str(svc.get("name", "")):
                        out.append(f"Ingress exposes the Ray head: {svc}")
        # NetworkPolicy allowing the internet in.
        if kind == "NetworkPolicy":
            for rule in spec.get("ingress", []) or []:
                peers = rule.get("from", [])
                if any(OPEN_CIDR.fullmatch(str(p.get("ipBlock", {}).get("cidr", ""))) for p in peers):
                    ports = [p.get("port") for p in rule.get("ports", [])]
                    if not ports or any(isinstance(p, int) and p in RAY_PORTS for p in ports):
                        out.append("NetworkPolicy admits the internet to Ray ports")
        # Auth switched off, or a secret written inline.
        if node.get("mode") == "disabled" and "mode" in node and len(node) <= 3:
            out.append(f"Ray auth disabled: {node}")
        if node.get("name") == "RAY_AUTH_MODE" and str(node.get("value", "")).lower() == "disabled":
            out.append("RAY_AUTH_MODE set to disabled")
        if "value" in node and re.search(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY", str(node.get("name", "")), re.I):
            out.append(f"literal secret in env var {node['name']}")
        if "gcp_credentials" in node:
            out.append("inline gcp_credentials")
    return out


def scan(paths: list[Path]) -> list[str]:
    """Findings for every file: text rules on every line, structured rules on YAML."""
    findings = []
    for path in paths:
        text = path.read_text(errors="replace")
        for no, line in _logical_lines(text):
            if _line_opens_ray_port(line):
                findings.append(f"{path}:{no}: opens a Ray port to the internet: {line.strip()}")
            for pattern in CREDENTIALS:
                if pattern.search(line):
                    findings.append(f"{path}:{no}: credential-like string ({pattern.pattern})")
        if path.suffix in (".yaml", ".yml"):
            for doc in yaml.safe_load_all(text):
                findings += [f"{path}: {f}" for f in _structured_findings(doc)]
    return findings


def test_cluster_files_expose_no_ray_port_and_hold_no_credentials():
    files = sorted(p for p in CLUSTER.rglob("*") if p.is_file())
    assert len(files) >= 6
    assert scan(files) == []


BAD_FILES = {
    "aws_sg_dashboard.yaml": """
provider:
  security_group:
    IpPermissions:
      - {IpProtocol: tcp, FromPort: 8265, ToPort: 8265, IpRanges: [{CidrIp: 0.0.0.0/0}]}
""",
    "aws_sg_all_ipv6.yaml": """
IpPermissions:
  - IpProtocol: "-1"
    FromPort: -1
    ToPort: -1
    Ipv6Ranges: [{CidrIpv6: "::/0"}]
""",
    "gcp_firewall_range.yaml": """
firewall:
  sourceRanges: [0.0.0.0/0]
  allowed:
    - {IPProtocol: tcp, ports: ["6000-7000"]}
""",
    "k8s_lb.yaml": """
apiVersion: v1
kind: Service
metadata: {name: ray-client}
spec:
  type: LoadBalancer
  ports: [{port: 10001}]
""",
    "kuberay_nodeport.yaml": """
apiVersion: ray.io/v1
kind: RayCluster
spec:
  headGroupSpec: {serviceType: NodePort}
""",
    "comment_in_docs.md": """
Open it up:
    gcloud compute firewall-rules create ray --network=default \\
      --rules=all --source-ranges=0.0.0.0/0
""",
    "aws_cli_gcs.sh": "aws ec2 authorize-security-group-ingress --group-id sg-1 --protocol tcp --port 6379 --cidr 0.0.0.0/0\n",
    "keys.yaml": "aws_secret_access_key: abc\n",
    "pem.txt": "-----BEGIN PRIVATE KEY-----\n",
    "auth_off.yaml": "head_start_ray_commands: [RAY_AUTH_MODE=disabled ray start --head]\n",
    "auth_off_k8s.yaml": "spec: {authOptions: {mode: disabled}}\n",
    "env_off_k8s.yaml": "env: [{name: RAY_AUTH_MODE, value: disabled}]\n",
}


@pytest.mark.parametrize("fname", sorted(BAD_FILES))
def test_scanner_fires_on_a_bad_file(tmp_path, fname):
    bad = tmp_path / fname
    bad.write_text(BAD_FILES[fname])
    assert scan([bad]), f"scanner missed {fname}"


def test_scanner_accepts_restricted_rules(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(
        """
IpPermissions:
  - {IpProtocol: tcp, FromPort: 22, ToPort: 22, IpRanges: [{CidrIp: 203.0.113.0/24}]}
  - {IpProtocol: "-1", FromPort: -1, ToPort: -1, UserIdGroupPairs: [{GroupId: sg-1}]}
firewall:
  sourceRanges: [10.10.0.0/20]
  allowed: [{IPProtocol: all}]
ssh:
  sourceRanges: [0.0.0.0/0]
  allowed: [{IPProtocol: tcp, ports: ["22"]}]
# SSH from anywhere is not a Ray port: 0.0.0.0/0 tcp:22
"""
    )
    assert scan([good]) == []
