#!/usr/bin/python3
"""Static checks of the Kubernetes manifests in this folder (docs/containers.md).

    deploy/kubernetes/validate.py [--self-test]

1. Schema: every object is checked against the Kubernetes API's own models as Debian's
   python3-kubernetes ships them (generated from the API's OpenAPI specification):
   every field must exist in its object's model (a misspelt key is an error), every
   value must have the field's type, every required field must be present.
2. The project's rules: pods run as the images' numeric non-root user with no privilege
   escalation, a read-only root filesystem, no capabilities and the runtime's seccomp
   profile; every container has CPU and memory requests and limits (request <= limit);
   the agent has the seed's limits exactly; selectors match their pods' labels; the
   Service targets a declared container port; probes use routes nova-cloud serves
   (cloud/openapi.yaml) with a Host it accepts; every volume mount names a volume; every
   file nova-cloud's ConfigMap names lies in a mounted volume; kustomization.yaml lists
   every manifest.

--self-test breaks the manifests in memory one way at a time and checks that each
break is reported, so that a check that never fires cannot pass unnoticed.

Prints one line per problem, naming the file, the object and the field; exits 1 if any.
"""
import copy
import functools
import inspect
import os
import re
import sys

import yaml
from kubernetes.client import models

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MANIFESTS = ["namespace.yaml", "nova-cloud.yaml", "nova-agent.yaml"]

# The seed's limits for an agent (issue #11).
AGENT_RESOURCES = {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}


def image_uid():
    """The image user, from its one home: deploy/containers/build-image.sh."""
    with open(os.path.join(ROOT, "deploy/containers/build-image.sh")) as f:
        return int(re.search(r"^readonly image_uid=(\d+)$", f.read(), re.M).group(1))


# ---- 1. schema -------------------------------------------------------------------------

def model_class(api_version, kind):
    version = api_version.split("/")[-1]
    return getattr(models, version.capitalize() + kind, None)


@functools.lru_cache(maxsize=None)
def required_fields(cls):
    required = set()
    for attr in cls.openapi_types:
        setter = getattr(cls, attr).fset
        if setter and "must not be `None`" in inspect.getsource(setter):
            required.add(cls.attribute_map[attr])
    return required


SCALARS = {"str": str, "bool": bool, "int": int, "float": (int, float)}


def check_value(value, type_name, where, problems):
    if type_name in ("object", "datetime"):
        return  # IntOrString, free-form, timestamps: any scalar the API accepts
    if type_name in SCALARS:
        ok = isinstance(value, SCALARS[type_name]) and not (type_name != "bool" and isinstance(value, bool))
        if not ok:
            problems.append(f"{where}: {value!r} is not of type {type_name}")
        return
    if type_name.startswith("list["):
        if not isinstance(value, list):
            problems.append(f"{where}: must be a list")
            return
        for i, item in enumerate(value):
            check_value(item, type_name[5:-1], f"{where}[{i}]", problems)
        return
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            problems.append(f"{where}: must be a map")
            return
        inner = type_name[5:-1].split(", ", 1)[1]
        for k, v in value.items():
            check_value(v, inner, f"{where}.{k}", problems)
        return
    check_object(value, getattr(models, type_name), where, problems)


def check_object(value, cls, where, problems):
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a map ({cls.__name__})")
        return
    by_json_name = {json: attr for attr, json in cls.attribute_map.items()}
    for key, v in value.items():
        if key not in by_json_name:
            problems.append(f"{where}.{key}: no such field in {cls.__name__}")
            continue
        check_value(v, cls.openapi_types[by_json_name[key]], f"{where}.{key}", problems)
    for key in sorted(required_fields(cls) - value.keys()):
        problems.append(f"{where}.{key}: required by {cls.__name__}, missing")


def check_schema(file, doc, problems):
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        problems.append(f"{file}: a document without apiVersion and kind")
        return
    cls = model_class(doc["apiVersion"], doc["kind"])
    if cls is None:
        problems.append(f"{file}: {doc['apiVersion']} {doc['kind']}: not a Kubernetes API object")
        return
    check_object(doc, cls, f"{file}: {doc['kind']}/{doc.get('metadata', {}).get('name', '?')}", problems)


# ---- 2. the project's rules --------------------------------------------------------------

def quantity(text):
    """A CPU or memory quantity in base units (cores, bytes)."""
    m = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|k|M|G)?", str(text))
    if not m:
        raise ValueError(f"{text!r} is not a quantity")
    scale = {None: 1, "m": 1e-3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1e3, "M": 1e6, "G": 1e9}
    return float(m.group(1)) * scale[m.group(2)]


def workloads(docs):
    return [(f, d) for f, d in docs if d.get("kind") in ("Deployment", "DaemonSet")]


def check_pod(where, pod, uid, problems):
    psc = pod.get("securityContext", {})
    for key, want in (("runAsNonRoot", True), ("runAsUser", uid), ("runAsGroup", uid)):
        if psc.get(key) != want:
            problems.append(f"{where}: spec.securityContext.{key} must be {want}")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: spec.securityContext.seccompProfile.type must be RuntimeDefault")
    volumes = {v["name"] for v in pod.get("volumes", [])}
    for c in pod.get("containers", []):
        cw = f"{where}: container {c.get('name')}"
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cw}: securityContext.allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cw}: securityContext.readOnlyRootFilesystem must be true")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{cw}: securityContext.capabilities.drop must be [ALL]")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind, {}):
                    problems.append(f"{cw}: resources.{kind}.{r} missing")
        for r in ("cpu", "memory"):
            try:
                if quantity(res["requests"][r]) > quantity(res["limits"][r]):
                    problems.append(f"{cw}: resources.requests.{r} above resources.limits.{r}")
            except (KeyError, ValueError):
                pass
        for m in c.get("volumeMounts", []):
            if m.get("name") not in volumes:
                problems.append(f"{cw}: volumeMounts {m.get('name')}: no such volume in the pod")


def check_selectors(docs, problems):
    for file, w in workloads(docs):
        where = f"{file}: {w['kind']}/{w['metadata']['name']}"
        selector = w["spec"].get("selector", {}).get("matchLabels", {})
        labels = w["spec"]["template"]["metadata"].get("labels", {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{where}: spec.selector.matchLabels {selector} does not match the pod labels {labels}")
    for file, s in [(f, d) for f, d in docs if d.get("kind") == "Service"]:
        where = f"{file}: Service/{s['metadata']['name']}"
        pods = [w for _, w in workloads(docs)
                if all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v
                       for k, v in s["spec"].get("selector", {}).items())]
        if not s["spec"].get("selector") or not pods:
            problems.append(f"{where}: spec.selector {s['spec'].get('selector')} selects no pod of these manifests")
            continue
        ports = [p for w in pods for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])]
        for p in s["spec"].get("ports", []):
            target = p.get("targetPort", p.get("port"))
            if not any(target in (cp.get("name"), cp.get("containerPort")) for cp in ports):
                problems.append(f"{where}: port {p.get('name')}: targetPort {target} is no container port of its pods")


def cloud_config(docs):
    for _, d in docs:
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "nova-cloud-config":
            return yaml.safe_load(d["data"]["cloud.yaml"])
    return None


def check_agent(docs, problems):
    agents = [(f, w) for f, w in workloads(docs) if w["metadata"]["name"] == "nova-agent"]
    if not agents or agents[0][1]["kind"] != "DaemonSet":
        problems.append("nova-agent.yaml: no DaemonSet nova-agent")
        return
    file, ds = agents[0]
    for c in ds["spec"]["template"]["spec"]["containers"]:
        if c.get("resources") != AGENT_RESOURCES:
            problems.append(f"{file}: DaemonSet/nova-agent: container {c['name']}: resources must be {AGENT_RESOURCES}")


def check_cloud(docs, problems):
    with open(os.path.join(ROOT, "cloud/openapi.yaml")) as f:
        routes = set(yaml.safe_load(f)["paths"])
    config = cloud_config(docs)
    deployments = [(f, w) for f, w in workloads(docs) if w["metadata"]["name"] == "nova-cloud"]
    if config is None or not deployments or deployments[0][1]["kind"] != "Deployment":
        problems.append("nova-cloud.yaml: needs the ConfigMap nova-cloud-config and the Deployment nova-cloud")
        return
    file, dep = deployments[0]
    where = f"{file}: Deployment/nova-cloud"
    http = config.get("http", {})
    allowed = http.get("allowed_hosts", [])
    for c in dep["spec"]["template"]["spec"]["containers"]:
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
        if http.get("port") not in ports.values():
            problems.append(f"{where}: http.port {http.get('port')} of the ConfigMap is no containerPort")
        for probe in ("livenessProbe", "readinessProbe"):
            get = c.get(probe, {}).get("httpGet")
            if not get:
                problems.append(f"{where}: {probe}: missing (nova-cloud serves /api/v1/health and /readyz)")
                continue
            if get.get("path") not in routes:
                problems.append(f"{where}: {probe}.httpGet.path {get.get('path')} is not a route in cloud/openapi.yaml")
            if ports.get(get.get("port"), get.get("port")) != http.get("port"):
                problems.append(f"{where}: {probe}.httpGet.port {get.get('port')} is not nova-cloud's http.port")
            hosts = [h["value"] for h in get.get("httpHeaders", []) if h.get("name", "").lower() == "host"]
            if not hosts or hosts[0] not in allowed:
                problems.append(f"{where}: {probe}: sends Host {hosts or '(the pod IP)'}, not in http.allowed_hosts {allowed}")
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        files = [v for section in config.values() if isinstance(section, dict)
                 for k, v in section.items() if k.endswith("_file") and v]
        for path in files:
            if not any(path.startswith(m.rstrip("/") + "/") for m in mounts):
                problems.append(f"{where}: the ConfigMap names {path}, which no volume mount holds")
    if http.get("listen") != "0.0.0.0":
        problems.append(f"{file}: ConfigMap/nova-cloud-config: http.listen must be 0.0.0.0 to be reached from the Service")


def check_kustomization(problems):
    with open(os.path.join(HERE, "kustomization.yaml")) as f:
        listed = yaml.safe_load(f).get("resources", [])
    for name in MANIFESTS:
        if name not in listed:
            problems.append(f"kustomization.yaml: resources does not list {name}")


def validate(docs):
    problems = []
    for file, doc in docs:
        check_schema(file, doc, problems)
    uid = image_uid()
    for file, w in workloads(docs):
        check_pod(f"{file}: {w['kind']}/{w['metadata']['name']}", w["spec"]["template"]["spec"], uid, problems)
    check_selectors(docs, problems)
    check_agent(docs, problems)
    check_cloud(docs, problems)
    return problems


def load():
    docs = []
    for name in MANIFESTS:
        with open(os.path.join(HERE, name)) as f:
            docs += [(name, d) for d in yaml.safe_load_all(f) if d is not None]
    return docs


# ---- --self-test -------------------------------------------------------------------------

def find(docs, kind, name):
    return next(d for _, d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def cloud_container(docs):
    return find(docs, "Deployment", "nova-cloud")["spec"]["template"]["spec"]["containers"][0]


def agent_container(docs):
    return find(docs, "DaemonSet", "nova-agent")["spec"]["template"]["spec"]["containers"][0]


def set_cloud_yaml(docs, change):
    cm = find(docs, "ConfigMap", "nova-cloud-config")
    config = yaml.safe_load(cm["data"]["cloud.yaml"])
    change(config)
    cm["data"]["cloud.yaml"] = yaml.safe_dump(config)


# (what breaks, how, a fragment of the problem it must cause)
BREAKS = [
    ("misspelt field", lambda d: cloud_container(d).update(imagePullPolicyy="Always"), "no such field"),
    ("wrong type", lambda d: find(d, "Deployment", "nova-cloud")["spec"].update(replicas="1"), "not of type int"),
    ("missing required field", lambda d: cloud_container(d).pop("name"), "required by V1Container"),
    ("root user", lambda d: find(d, "DaemonSet", "nova-agent")["spec"]["template"]["spec"]["securityContext"]
     .update(runAsUser=0), "runAsUser must be"),
    ("privilege escalation", lambda d: cloud_container(d)["securityContext"].pop("allowPrivilegeEscalation"),
     "allowPrivilegeEscalation"),
    ("agent limit", lambda d: agent_container(d)["resources"]["limits"].update(memory="128Mi"), "resources must be"),
    ("request above limit", lambda d: cloud_container(d)["resources"]["requests"].update(memory="1Gi"),
     "above resources.limits.memory"),
    ("selector", lambda d: find(d, "Deployment", "nova-cloud")["spec"]["selector"]["matchLabels"]
     .update({"app.kubernetes.io/name": "other"}), "does not match the pod labels"),
    ("service port", lambda d: find(d, "Service", "nova-cloud")["spec"]["ports"][0].update(targetPort="web"),
     "no container port"),
    ("probe route", lambda d: cloud_container(d)["livenessProbe"]["httpGet"].update(path="/healthz"),
     "not a route"),
    ("probe host", lambda d: cloud_container(d)["readinessProbe"]["httpGet"].pop("httpHeaders"),
     "not in http.allowed_hosts"),
    ("unmounted file", lambda d: set_cloud_yaml(d, lambda c: c["mqtt"].update(tls_ca_file="/etc/ssl/ca.pem")),
     "no volume mount holds"),
    ("listen", lambda d: set_cloud_yaml(d, lambda c: c["http"].update(listen="127.0.0.1")), "http.listen"),
    ("mount without volume", lambda d: agent_container(d)["volumeMounts"].append({"name": "x", "mountPath": "/x"}),
     "no such volume"),
]


def self_test():
    good = load()
    failures = 0
    if validate(good):
        print("self-test: the manifests themselves do not pass")
        return 1
    for what, breaks, expected in BREAKS:
        docs = copy.deepcopy(good)
        breaks(docs)
        problems = validate(docs)
        if not any(expected in p for p in problems):
            print(f"self-test: breaking '{what}' was not reported (expected '{expected}'); got {problems}")
            failures += 1
    print(f"self-test: {len(BREAKS) - failures} of {len(BREAKS)} breaks reported")
    return 1 if failures else 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    problems = validate(load())
    check_kustomization(problems)
    for p in problems:
        print(p)
    print(f"validate: {len(MANIFESTS)} manifests, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
