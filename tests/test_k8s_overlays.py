"""The kustomize overlays of deploy/k8s, rendered and checked offline.

Each overlay is rendered with kustomize and every object validated against its schema
(the Kubernetes API, or the operator's CRD). Then the mistakes an operator fears: a
NetworkPolicy that lets anything else out or forgets a port, a Secret nobody creates,
topics or ACLs that drift from what the code produces and consumes, a service
without its autoscaler, its TLS or its alerts. Each checker returns problems, and the
self-tests at the end feed it broken input to prove it can fail.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from services.intake.app import registry as intake_registry
from services.outcomes.app import registry as outcomes_registry
from services.scheduling.app import registry as scheduling_registry
from shared.events.envelope import topic_for
from shared.fhir.registry import Registry
from shared.settings import ServiceSettings
from tests.k8s_render import K8S_DIR, OPERATOR_SECRETS, OVERLAYS, Doc, render, schema_problems

SERVICES: dict[str, int] = {"intake": 8001, "scheduling": 8002, "outcomes": 8003}
REGISTRIES: dict[str, Callable[[], Registry]] = {
    "intake": intake_registry,
    "scheduling": scheduling_registry,
    "outcomes": outcomes_registry,
}
TOPIC_PREFIX = ServiceSettings().topic_prefix
# The dead-letter topic of a consumed topic (shared/events/consumer.py).
DLQ_SUFFIX = ".dlq"
# ... and of those, the ones a pod must start without.
OPTIONAL_SECRETS = frozenset({"outcomes-research-export"})
# The metric names the alerts use; the metrics endpoint must export them.
ALERT_METRICS = frozenset(
    {
        "kemdr_outbox_oldest_unsent_age_seconds",
        "kemdr_consumer_lag",
        "kemdr_dead_letters_total",
        "kemdr_replica_staleness_seconds",
        "http_requests_total",
    }
)
# Who may reach the pods from outside the namespace: (namespace, app.kubernetes.io/name).
INGRESS_CONTROLLER = ("ingress-nginx", "ingress-nginx")
PROMETHEUS = ("monitoring", "prometheus")
OTLP_COLLECTOR = ("observability", "opentelemetry-collector")
DNS = ("kube-system", {"k8s-app": "kube-dns"})


# --------------------------------------------------------------------------- #
# what the code does


def owned_types(service: str) -> set[str]:
    """The resource types a service owns (its relay publishes their events)."""
    registry = REGISTRIES[service]()
    return {d.type for d in registry.resources.values() if d.owner == service}


def replicated(service: str) -> dict[str, str]:
    """Replicated type -> its owner, for one service."""
    registry = REGISTRIES[service]()
    return {d.type: d.owner for d in registry.resources.values() if d.owner != service}


def produced_topics(service: str) -> set[str]:
    return {topic_for(TOPIC_PREFIX, t) for t in owned_types(service)}


def consumed_topics(service: str) -> set[str]:
    return {topic_for(TOPIC_PREFIX, t) for t in replicated(service)}


def dlq_topics(service: str) -> set[str]:
    return {t + DLQ_SUFFIX for t in consumed_topics(service)}


def consumer_group(service: str) -> str:
    """The group of the replica consumer (shared/events/runtime.py)."""
    return f"{TOPIC_PREFIX}{service}-replicas"


def code_topics() -> set[str]:
    """Every topic the three services produce to or consume from."""
    return {
        topic
        for name in SERVICES
        for topic in produced_topics(name) | consumed_topics(name) | dlq_topics(name)
    }


def peers_read_by(service: str) -> set[str]:
    """The services whose `_history` this one reads to catch its replicas up."""
    return set(replicated(service).values())


# --------------------------------------------------------------------------- #
# helpers over rendered objects


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc.get("kind") == kind]


def name_of(doc: Doc) -> str:
    return str((doc.get("metadata") or {}).get("name", ""))


def by_name(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {name_of(doc): doc for doc in of_kind(docs, kind)}


def pod_spec(workload: Doc) -> Doc:
    return ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}


def containers(workload: Doc) -> list[Doc]:
    spec = pod_spec(workload)
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def configmap_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps (envFrom)."""
    configmaps = by_name(docs, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = (source.get("configMapRef") or {}).get("name")
        env.update({str(k): str(v) for k, v in (configmaps.get(ref, {}).get("data") or {}).items()})
    return env


def service_configmap(docs: list[Doc], service: str) -> dict[str, str]:
    return {
        str(k): str(v) for k, v in by_name(docs, "ConfigMap")[f"{service}-config"]["data"].items()
    }


# --------------------------------------------------------------------------- #
# checkers


def generated_secrets(docs: list[Doc]) -> dict[str, set[str]]:
    """Secret name -> keys, for the Secrets the operators generate from these objects."""
    secrets: dict[str, set[str]] = {}
    for cluster in of_kind(docs, "Cluster"):
        secrets[f"{name_of(cluster)}-app"] = {
            *("username", "user", "password", "dbname", "host", "port", "pgpass"),
            *("uri", "jdbc-uri", "fqdn-uri", "fqdn-jdbc-uri"),
        }
    for user in of_kind(docs, "KafkaUser"):
        if ((user.get("spec") or {}).get("authentication") or {}).get("type") == "scram-sha-512":
            secrets[name_of(user)] = {"password", "sasl.jaas.config"}
    for kafka in of_kind(docs, "Kafka"):
        secrets[f"{name_of(kafka)}-cluster-ca-cert"] = {"ca.crt", "ca.p12", "ca.password"}
    for certificate in of_kind(docs, "Certificate"):
        secrets[certificate["spec"]["secretName"]] = {"tls.crt", "tls.key", "ca.crt"}
    return secrets


def secret_reference_problems(
    docs: list[Doc], provided: dict[str, set[str]], optional: frozenset[str] = frozenset()
) -> list[str]:
    """Every Secret a workload reads (env or volume) is rendered, generated by an operator
    or provided by the organisation; the optional ones are declared optional."""
    available = {**generated_secrets(docs), **provided}
    for secret in of_kind(docs, "Secret"):
        keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
        available.setdefault(name_of(secret), set()).update(keys)
    problems: list[str] = []
    for workload in of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet"):
        label = name_of(workload)
        refs: list[tuple[str, str, bool]] = []
        for container in containers(workload):
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref is not None:
                    refs.append(
                        (ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional")))
                    )
        for volume in pod_spec(workload).get("volumes") or []:
            secret = volume.get("secret")
            if secret is not None:
                name = secret.get("secretName", "")
                keys = [item["key"] for item in secret.get("items") or []] or [""]
                refs += [(name, key, bool(secret.get("optional"))) for key in keys]
        for name, key, is_optional in refs:
            if name not in available:
                problems.append(f"{label}: Secret {name!r} is neither shipped nor generated")
            elif key and key not in available[name]:
                problems.append(f"{label}: Secret {name!r} has no key {key!r}")
            if name in optional and not is_optional:
                problems.append(f"{label}: Secret {name!r} must be referenced as optional")
    return problems


def egress_port_problems(policy: Doc) -> list[str]:
    """Every egress rule names the ports it opens (a rule without ports opens all)."""
    problems: list[str] = []
    for index, rule in enumerate((policy.get("spec") or {}).get("egress") or []):
        ports = rule.get("ports") or []
        if not ports or any("port" not in port for port in ports):
            problems.append(f"{name_of(policy)}: egress rule {index} opens every port")
        if not rule.get("to"):
            problems.append(f"{name_of(policy)}: egress rule {index} allows every destination")
    return problems


def peer_key(peer: Doc) -> tuple[str, ...]:
    """A NetworkPolicy peer as a comparable key."""
    if "ipBlock" in peer:
        return ("ip", peer["ipBlock"]["cidr"])
    namespace = ((peer.get("namespaceSelector") or {}).get("matchLabels") or {}).get(
        "kubernetes.io/metadata.name", "<this namespace>"
    )
    labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
    return ("pods", namespace, *sorted(f"{k}={v}" for k, v in labels.items()))


def allowed(policy: Doc, direction: str) -> set[tuple[tuple[str, ...], str]]:
    """(peer, protocol/port) pairs a policy allows in one direction."""
    field = "from" if direction == "ingress" else "to"
    pairs: set[tuple[tuple[str, ...], str]] = set()
    for rule in (policy.get("spec") or {}).get(direction) or []:
        for peer in rule.get(field) or [{"<anything>": True}]:
            key = peer_key(peer) if "<anything>" not in peer else ("<anything>",)
            for port in rule.get("ports") or [{"protocol": "TCP", "port": "<any>"}]:
                pairs.add((key, f"{port.get('protocol', 'TCP')}/{port.get('port', '<any>')}"))
    return pairs


def pods(namespace: str, name: str) -> tuple[str, ...]:
    return ("pods", namespace, f"app.kubernetes.io/name={name}")


def expected_traffic(
    service: str, issuer_cidrs: set[str], ehr_cidrs: set[str]
) -> tuple[set[Any], set[Any]]:
    """What a service's pods must be allowed to receive and send, and nothing else."""
    port = f"TCP/{SERVICES[service]}"
    readers = {other for other in SERVICES if service in peers_read_by(other)}
    inbound = {(pods(*INGRESS_CONTROLLER), port), (pods(*PROMETHEUS), port)}
    inbound |= {
        (("pods", "<this namespace>", f"app.kubernetes.io/name={r}"), port) for r in readers
    }
    dns = ("pods", DNS[0], *sorted(f"{k}={v}" for k, v in DNS[1].items()))
    outbound = {(dns, "UDP/53"), (dns, "TCP/53")}
    outbound.add((("pods", "<this namespace>", f"cnpg.io/cluster={service}-db"), "TCP/5432"))
    kafka = ("pods", "<this namespace>", "strimzi.io/broker-role=true", "strimzi.io/cluster=kafka")
    outbound.add((kafka, "TCP/9093"))
    outbound |= {(("ip", cidr), "TCP/443") for cidr in issuer_cidrs}
    for owner in peers_read_by(service):
        outbound.add(
            (
                ("pods", "<this namespace>", f"app.kubernetes.io/name={owner}"),
                f"TCP/{SERVICES[owner]}",
            )
        )
    if service == "intake":
        outbound |= {(("ip", cidr), "TCP/443") for cidr in ehr_cidrs}
    outbound |= {(pods(*OTLP_COLLECTOR), "TCP/4318"), (pods(*OTLP_COLLECTOR), "TCP/4317")}
    return inbound, outbound


def network_policy_problems(
    docs: list[Doc], issuer_cidrs: set[str], ehr_cidrs: set[str]
) -> list[str]:
    """Default deny for the FHIR pods, then exactly the expected traffic per service."""
    policies = of_kind(docs, "NetworkPolicy")
    problems = [p for policy in policies for p in egress_port_problems(policy)]
    deny = [
        p
        for p in policies
        if p["spec"].get("podSelector", {}).get("matchLabels")
        == {"app.kubernetes.io/component": "fhir-api"}
        and set(p["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny:
        problems.append("no default-deny NetworkPolicy for the FHIR API pods")
    deployments = by_name(docs, "Deployment")
    for service in SERVICES:
        labels = (deployments.get(service, {}).get("spec", {}).get("template", {})).get(
            "metadata", {}
        ).get("labels") or {}
        if labels.get("app.kubernetes.io/component") != "fhir-api":
            problems.append(f"{service}: its pods are not app.kubernetes.io/component=fhir-api")
        selecting = [
            p
            for p in policies
            if p not in deny
            and all(
                labels.get(k) == v
                for k, v in (p["spec"].get("podSelector", {}).get("matchLabels") or {}).items()
            )
        ]
        inbound = set().union(*(allowed(p, "ingress") for p in selecting))
        outbound = set().union(*(allowed(p, "egress") for p in selecting))
        want_in, want_out = expected_traffic(service, issuer_cidrs, ehr_cidrs)
        for extra in sorted(map(str, inbound - want_in)):
            problems.append(f"{service}: ingress allows {extra}")
        for missing in sorted(map(str, want_in - inbound)):
            problems.append(f"{service}: ingress lacks {missing}")
        for extra in sorted(map(str, outbound - want_out)):
            problems.append(f"{service}: egress allows {extra}")
        for missing in sorted(map(str, want_out - outbound)):
            problems.append(f"{service}: egress lacks {missing}")
    return problems


def topic_problems(docs: list[Doc], expected: set[str]) -> list[str]:
    """The KafkaTopics are exactly the topics the code uses, with one partition count."""
    topics = of_kind(docs, "KafkaTopic")
    names = [str(t["spec"].get("topicName") or name_of(t)) for t in topics]
    problems = [
        f"topic {n!r} is declared twice" for n in sorted({n for n in names if names.count(n) > 1})
    ]
    problems += [
        f"topic {t!r} is used by the code but has no KafkaTopic"
        for t in sorted(expected - set(names))
    ]
    problems += [f"KafkaTopic {t!r} is used by no service" for t in sorted(set(names) - expected)]
    partitions = {t["spec"].get("partitions") for t in topics}
    if len(partitions) > 1:
        problems.append(f"KafkaTopics differ in partitions: {sorted(map(str, partitions))}")
    for topic in topics:
        spec = topic["spec"]
        if spec.get("replicas") != 3:
            problems.append(f"{name_of(topic)}: replicas {spec.get('replicas')}, expected 3")
        if str((spec.get("config") or {}).get("min.insync.replicas")) != "2":
            problems.append(f"{name_of(topic)}: min.insync.replicas is not 2")
    return problems


def expected_acls(service: str) -> set[tuple[str, str, str]]:
    """(resource type, name, operation) the service's KafkaUser needs, and no more."""
    acls = {("topic", t, op) for t in produced_topics(service) for op in ("Describe", "Write")}
    acls |= {("topic", t, op) for t in consumed_topics(service) for op in ("Describe", "Read")}
    acls |= {("topic", t, op) for t in dlq_topics(service) for op in ("Describe", "Read", "Write")}
    if consumed_topics(service):
        groups = (consumer_group(service), f"{consumer_group(service)}.dlq-redrive")
        acls |= {("group", g, op) for g in groups for op in ("Describe", "Read")}
    return acls


def kafka_user_problems(docs: list[Doc]) -> list[str]:
    """One SCRAM user per service, named in its ConfigMap, with exactly its ACLs."""
    users = by_name(docs, "KafkaUser")
    problems: list[str] = []
    for service in SERVICES:
        username = service_configmap(docs, service).get("KAFKA_SASL_USERNAME", "")
        user = users.get(username)
        if user is None:
            problems.append(f"{service}: no KafkaUser {username!r}")
            continue
        spec = user["spec"]
        if (spec.get("authentication") or {}).get("type") != "scram-sha-512":
            problems.append(f"{username}: authentication is not scram-sha-512")
        granted: set[tuple[str, str, str]] = set()
        for acl in (spec.get("authorization") or {}).get("acls") or []:
            resource = acl["resource"]
            if resource.get("patternType", "literal") != "literal":
                problems.append(f"{username}: ACL on {resource.get('name')!r} is not literal")
            for operation in acl.get("operations") or []:
                granted.add((resource["type"], str(resource.get("name")), operation))
        for extra in sorted(granted - expected_acls(service)):
            problems.append(f"{username}: ACL grants {extra}, which the code does not need")
        for missing in sorted(expected_acls(service) - granted):
            problems.append(f"{username}: ACL lacks {missing}")
    return problems


def kafka_cluster_problems(docs: list[Doc]) -> list[str]:
    """KRaft with node pools, 3 brokers, RF 3, min ISR 2, one TLS + SCRAM listener."""
    problems: list[str] = []
    kafkas = of_kind(docs, "Kafka")
    if len(kafkas) != 1:
        return [f"expected one Kafka, found {len(kafkas)}"]
    kafka = kafkas[0]["spec"]["kafka"]
    config = kafka.get("config") or {}
    for key, value in {
        "default.replication.factor": 3,
        "min.insync.replicas": 2,
        "offsets.topic.replication.factor": 3,
        "transaction.state.log.replication.factor": 3,
        "auto.create.topics.enable": False,
    }.items():
        if config.get(key) != value:
            problems.append(f"Kafka config {key} is {config.get(key)!r}, expected {value!r}")
    if (kafka.get("authorization") or {}).get("type") != "simple":
        problems.append("Kafka ACLs are not enforced (authorization.type simple)")
    for listener in kafka.get("listeners") or []:
        if listener.get("tls") is not True:
            problems.append(f"listener {listener.get('name')}: no TLS")
        if (listener.get("authentication") or {}).get("type") != "scram-sha-512":
            problems.append(f"listener {listener.get('name')}: not SCRAM-SHA-512")
    pools = of_kind(docs, "KafkaNodePool")
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    if brokers != 3:
        problems.append(f"{brokers} brokers, expected 3")
    if controllers < 3 or controllers % 2 == 0:
        problems.append(f"{controllers} KRaft controllers: a quorum needs an odd number >= 3")
    return problems


def hardening_problems(workload: Doc) -> list[str]:
    """Pod and container securityContext, and emptyDirs for /tmp and the metrics files."""
    spec = pod_spec(workload)
    pod = spec.get("securityContext") or {}
    problems: list[str] = []
    if pod.get("runAsNonRoot") is not True:
        problems.append("pod runAsNonRoot is not true")
    empty_dirs = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
    for container in containers(workload):
        label = f"{name_of(workload)}/{container.get('name')}"
        security = container.get("securityContext") or {}
        seccomp = (security.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            problems.append(f"{label}: seccompProfile is {seccomp!r}")
        if security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{label}: readOnlyRootFilesystem is not true")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{label}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{label}: capabilities are not all dropped")
        mounts = {m.get("mountPath"): m.get("name") for m in container.get("volumeMounts") or []}
        if mounts.get("/tmp") not in empty_dirs:
            problems.append(f"{label}: /tmp is not an emptyDir")
    return problems


def metrics_dir_problems(docs: list[Doc], workload: Doc) -> list[str]:
    """PROMETHEUS_MULTIPROC_DIR is set and is an emptyDir in the serving container."""
    spec = pod_spec(workload)
    empty_dirs = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
    problems: list[str] = []
    for container in spec.get("containers") or []:
        directory = configmap_env(docs, container).get("PROMETHEUS_MULTIPROC_DIR")
        mounts = {m.get("mountPath"): m.get("name") for m in container.get("volumeMounts") or []}
        if not directory:
            problems.append(f"{name_of(workload)}: PROMETHEUS_MULTIPROC_DIR is not set")
        elif mounts.get(directory) not in empty_dirs:
            problems.append(f"{name_of(workload)}: {directory} is not an emptyDir mount")
    return problems


def autoscaler_problems(docs: list[Doc]) -> list[str]:
    """One autoscaling/v2 CPU HorizontalPodAutoscaler per Deployment, owning its replicas."""
    problems: list[str] = []
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    for deployment in of_kind(docs, "Deployment"):
        name = name_of(deployment)
        mine = [
            h
            for h in hpas
            if h["spec"]["scaleTargetRef"]
            == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        ]
        if len(mine) != 1:
            problems.append(f"{name}: {len(mine)} HorizontalPodAutoscalers")
            continue
        hpa = mine[0]
        if hpa["apiVersion"] != "autoscaling/v2":
            problems.append(f"{name}: HPA is {hpa['apiVersion']}")
        resources = [
            m["resource"]["name"]
            for m in hpa["spec"].get("metrics") or []
            if m["type"] == "Resource"
        ]
        if "cpu" not in resources:
            problems.append(f"{name}: HPA does not scale on CPU")
        if hpa["spec"].get("minReplicas", 1) < 2:
            problems.append(f"{name}: HPA may scale below 2 replicas")
        if "replicas" in deployment["spec"]:
            problems.append(f"{name}: spec.replicas is set, so each apply resets the HPA's choice")
    return problems


def ingress_tls_problems(docs: list[Doc]) -> list[str]:
    """Every Ingress host is served over TLS with a Secret a Certificate covers."""
    certificates = {
        c["spec"]["secretName"]: set(c["spec"].get("dnsNames") or [])
        for c in of_kind(docs, "Certificate")
    }
    problems: list[str] = []
    for ingress in of_kind(docs, "Ingress"):
        hosts = {rule.get("host") for rule in ingress["spec"].get("rules") or []}
        covered: set[str] = set()
        for tls in ingress["spec"].get("tls") or []:
            secret = tls.get("secretName")
            if secret not in certificates:
                problems.append(
                    f"{name_of(ingress)}: TLS Secret {secret!r} comes from no Certificate"
                )
                continue
            covered |= set(tls.get("hosts") or []) & certificates[secret]
        for host in sorted(map(str, hosts - covered)):
            problems.append(f"{name_of(ingress)}: host {host} is not served over TLS")
    return problems


def monitoring_problems(docs: list[Doc]) -> list[str]:
    """A ServiceMonitor scrapes /metrics of every service; the alerts use known metrics."""
    problems: list[str] = []
    services = of_kind(docs, "Service")
    monitors = of_kind(docs, "ServiceMonitor")
    for service in services:
        if service["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "fhir-api":
            continue
        port_names = {p.get("name") for p in service["spec"]["ports"]}
        scraped = [
            m
            for m in monitors
            if all(
                service["metadata"].get("labels", {}).get(k) == v
                for k, v in m["spec"]["selector"].get("matchLabels", {}).items()
            )
            and any(
                e.get("port") in port_names and e.get("path") == "/metrics"
                for e in m["spec"]["endpoints"]
            )
        ]
        if not scraped:
            problems.append(f"{name_of(service)}: no ServiceMonitor scrapes /metrics")
    expressions = [
        rule["expr"]
        for rule_doc in of_kind(docs, "PrometheusRule")
        for group in rule_doc["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    for metric in sorted(ALERT_METRICS):
        if not any(metric in expr for expr in expressions):
            problems.append(f"no alert on {metric}")
    return problems


# --------------------------------------------------------------------------- #
# rendering and schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_matches_its_schema(overlay: str) -> None:
    docs = render(overlay)
    assert docs, f"overlay {overlay} renders nothing"
    problems = [p for doc in docs for p in schema_problems(doc)]
    assert not problems, problems


def test_prod_uses_the_operators_custom_resources() -> None:
    kinds = {doc["kind"] for doc in render("prod")}
    assert {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "KafkaUser",
        "Cluster",
        "Certificate",
        "ServiceMonitor",
        "PrometheusRule",
    } <= kinds
    assert not {"StatefulSet"} & kinds, "prod runs no hand-rolled Kafka or PostgreSQL"


def test_prod_ships_no_secrets_and_dev_no_strimzi() -> None:
    assert not of_kind(render("prod"), "Secret"), "prod Secrets are generated or provided"
    assert not of_kind(render("dev"), "Secret"), "dev Secrets are made by hand (example file)"
    assert not of_kind(render("dev"), "Kafka")


# --------------------------------------------------------------------------- #
# Secrets


def test_prod_secret_references_are_generated_or_provided() -> None:
    problems = secret_reference_problems(render("prod"), OPERATOR_SECRETS, OPTIONAL_SECRETS)
    assert not problems, problems


def test_dev_secret_references_are_in_the_example() -> None:
    example = K8S_DIR / "overlays" / "dev" / "secret.example.yaml"
    secrets = [d for d in yaml.safe_load_all(example.read_text(encoding="utf-8")) if d]
    provided = {
        name_of(s): set(s.get("stringData") or {}) | set(s.get("data") or {}) for s in secrets
    }
    problems = secret_reference_problems(render("dev"), provided)
    assert not problems, problems


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_prod_database_is_the_services_own_cloudnativepg_cluster(service: str) -> None:
    docs = render("prod")
    cluster = by_name(docs, "Cluster").get(f"{service}-db")
    assert cluster is not None, f"no CloudNativePG Cluster {service}-db"
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == service
    assert cluster["spec"]["instances"] >= 3
    synchronous = cluster["spec"]["postgresql"]["synchronous"]
    assert synchronous["number"] >= 1 and synchronous.get("dataDurability") == "required"
    deployment = by_name(docs, "Deployment")[service]
    for container in containers(deployment):
        refs = {
            env["name"]: env["valueFrom"]["secretKeyRef"]
            for env in container.get("env") or []
            if "secretKeyRef" in (env.get("valueFrom") or {})
        }
        assert refs[f"{service.upper()}_DATABASE_URL"] == {
            "name": f"{service}-db-app",
            "key": "uri",
        }


def test_the_research_key_is_an_optional_provided_secret() -> None:
    outcomes = by_name(render("prod"), "Deployment")["outcomes"]
    env = {e["name"]: e for c in containers(outcomes) for e in c.get("env") or []}
    ref = env["OUTCOMES_RESEARCH_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "outcomes-research-export" and ref["optional"] is True


# --------------------------------------------------------------------------- #
# Kafka


def test_the_code_uses_topics_of_every_kind() -> None:
    """The derivation below is not vacuous: owned, consumed, dead-letter and audit topics."""
    topics = code_topics()
    assert {"fhir.Patient", "fhir.Patient.dlq", "fhir.AuditEvent", "fhir.Observation"} <= topics


def test_kafka_topics_are_the_topics_the_code_uses() -> None:
    problems = topic_problems(render("prod"), code_topics())
    assert not problems, problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_partition_count_everywhere(overlay: str) -> None:
    docs = render(overlay)
    counts = {service_configmap(docs, s)[f"{s.upper()}_TOPIC_PARTITIONS"] for s in SERVICES}
    counts |= {str(t["spec"]["partitions"]) for t in of_kind(docs, "KafkaTopic")}
    assert counts == {"6"}, counts


def test_prod_services_leave_topics_to_strimzi_and_use_tls_and_scram() -> None:
    docs = render("prod")
    kafka = of_kind(docs, "Kafka")[0]
    listener = kafka["spec"]["kafka"]["listeners"][0]
    bootstrap = f"{name_of(kafka)}-kafka-bootstrap:{listener['port']}"
    for service in SERVICES:
        env = service_configmap(docs, service)
        assert env[f"{service.upper()}_CREATE_TOPICS"] == "false"
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        deployment = by_name(docs, "Deployment")[service]
        serve = pod_spec(deployment)["containers"][0]
        mounts = {m["mountPath"]: m for m in serve["volumeMounts"]}
        ca_dir = env["KAFKA_SSL_CAFILE"].rsplit("/", 1)[0]
        assert ca_dir in mounts and mounts[ca_dir]["readOnly"] is True
        volume = {v["name"]: v for v in pod_spec(deployment)["volumes"]}[mounts[ca_dir]["name"]]
        assert volume["secret"]["secretName"] == f"{name_of(kafka)}-cluster-ca-cert"
        password = {e["name"]: e for e in serve["env"]}["KAFKA_SASL_PASSWORD"]
        assert password["valueFrom"]["secretKeyRef"]["name"] == env["KAFKA_SASL_USERNAME"]


def test_topic_retention_matches_the_services_setting() -> None:
    """A replica older than the retention resynchronises over HTTP: both must agree."""
    docs = render("prod")
    hours = {
        service_configmap(docs, s).get(
            f"{s.upper()}_KAFKA_TOPIC_RETENTION_HOURS",
            str(ServiceSettings().kafka_topic_retention_hours),
        )
        for s in SERVICES
    }
    retention = {
        float(t["spec"]["config"]["retention.ms"]) / 3_600_000
        for t in of_kind(docs, "KafkaTopic")
        if not t["spec"]["topicName"].endswith(DLQ_SUFFIX)
    }
    assert {float(h) for h in hours} == retention


def test_kafka_users_have_exactly_the_acls_the_code_needs() -> None:
    problems = kafka_user_problems(render("prod"))
    assert not problems, problems


def test_kafka_cluster_is_kraft_replicated_and_secured() -> None:
    problems = kafka_cluster_problems(render("prod"))
    assert not problems, problems


# --------------------------------------------------------------------------- #
# NetworkPolicies


def test_network_policies_allow_exactly_what_the_services_need() -> None:
    docs = render("prod")
    problems = network_policy_problems(docs, {"192.0.2.10/32"}, {"198.51.100.0/24"})
    assert not problems, problems


def test_the_peer_graph_is_what_the_registries_say() -> None:
    """Catch-up reads: written out so a change in the registries is seen in review."""
    assert {s: peers_read_by(s) for s in SERVICES} == {
        "intake": set(),
        "scheduling": {"intake", "outcomes"},
        "outcomes": {"intake", "scheduling"},
    }


# --------------------------------------------------------------------------- #
# workloads


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_hardened(overlay: str) -> None:
    docs = render(overlay)
    problems = [
        p
        for d in of_kind(docs, "Deployment")
        for p in hardening_problems(d) + metrics_dir_problems(docs, d)
    ]
    assert not problems, problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrations_run_first_with_the_same_database(overlay: str) -> None:
    for deployment in of_kind(render(overlay), "Deployment"):
        service = name_of(deployment)
        spec = pod_spec(deployment)
        init = spec.get("initContainers") or []
        assert init and init[0]["command"] == ["python", "-m", f"services.{service}", "migrate"]
        key = f"{service.upper()}_DATABASE_URL"
        urls = [
            {e["name"]: e for e in c.get("env") or []}[key]["valueFrom"]
            for c in (init[0], spec["containers"][0])
        ]
        assert urls[0] == urls[1], f"{service}: migrate and serve use different databases"


def test_every_prod_deployment_has_a_cpu_autoscaler() -> None:
    problems = autoscaler_problems(render("prod"))
    assert not problems, problems


def test_prod_ingresses_are_tls_with_a_cert_manager_certificate() -> None:
    problems = ingress_tls_problems(render("prod"))
    assert not problems, problems


def test_prod_is_scraped_and_alerted_on() -> None:
    problems = monitoring_problems(render("prod"))
    assert not problems, problems


# --------------------------------------------------------------------------- #
# the checkers must be able to fail


def _mutated(overlay: str, change: Callable[[list[Doc]], None]) -> list[Doc]:
    docs = render(overlay)
    change(docs)
    return docs


def _first(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    return next(d for d in of_kind(docs, kind) if name is None or name_of(d) == name)


def test_schema_validation_rejects_unknown_and_mistyped_fields() -> None:
    topic = _first(render("prod"), "KafkaTopic")
    assert not schema_problems(topic)
    typo = copy.deepcopy(topic)
    typo["spec"]["partition"] = 6
    assert any("partition" in p for p in schema_problems(typo))
    wrong = copy.deepcopy(topic)
    wrong["spec"]["partitions"] = "six"
    assert schema_problems(wrong)
    kafka = copy.deepcopy(_first(render("prod"), "Kafka"))
    kafka["spec"]["kafka"]["listeners"][0]["authentication"]["type"] = "scram-sha-256"
    assert schema_problems(kafka)
    deployment = copy.deepcopy(_first(render("dev"), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = (
        True
    )
    assert schema_problems(deployment)
    assert schema_problems({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}})


def test_secret_checker_rejects_unknown_secrets_and_keys() -> None:
    def rename_db_secret(docs: list[Doc]) -> None:
        env = pod_spec(_first(docs, "Deployment", "intake"))["containers"][0]["env"]
        env[0]["valueFrom"]["secretKeyRef"]["name"] = "intake-database"

    def wrong_key(docs: list[Doc]) -> None:
        env = pod_spec(_first(docs, "Deployment", "intake"))["containers"][0]["env"]
        env[0]["valueFrom"]["secretKeyRef"]["key"] = "url"

    def not_optional(docs: list[Doc]) -> None:
        for env in pod_spec(_first(docs, "Deployment", "outcomes"))["containers"][0]["env"]:
            env.get("valueFrom", {}).get("secretKeyRef", {}).pop("optional", None)

    for change, message in (
        (rename_db_secret, "'intake-database' is neither shipped nor generated"),
        (wrong_key, "has no key 'url'"),
        (not_optional, "must be referenced as optional"),
    ):
        problems = secret_reference_problems(
            _mutated("prod", change), OPERATOR_SECRETS, OPTIONAL_SECRETS
        )
        assert any(message in p for p in problems), (message, problems)


def test_topic_and_acl_checkers_reject_drift() -> None:
    expected = code_topics()
    assert any(
        "has no KafkaTopic" in p for p in topic_problems(render("prod"), expected | {"fhir.Extra"})
    )
    assert any(
        "used by no service" in p for p in topic_problems(render("prod"), expected - {"fhir.Slot"})
    )

    def six_and_three(docs: list[Doc]) -> None:
        _first(docs, "KafkaTopic")["spec"]["partitions"] = 3
        _first(docs, "KafkaTopic")["spec"]["replicas"] = 1

    problems = topic_problems(_mutated("prod", six_and_three), expected)
    assert any("differ in partitions" in p for p in problems)
    assert any("replicas 1" in p for p in problems)

    def widen(docs: list[Doc]) -> None:
        user = _first(docs, "KafkaUser", "kemdr-intake")
        user["spec"]["authorization"]["acls"].append(
            {
                "resource": {"type": "topic", "name": "fhir.Observation", "patternType": "literal"},
                "operations": ["Read"],
            }
        )
        user["spec"]["authorization"]["acls"].pop(0)

    problems = kafka_user_problems(_mutated("prod", widen))
    assert any("grants ('topic', 'fhir.Observation', 'Read')" in p for p in problems)
    assert any("kemdr-intake: ACL lacks" in p for p in problems)

    def weaken(docs: list[Doc]) -> None:
        kafka = _first(docs, "Kafka")["spec"]["kafka"]
        kafka["config"]["min.insync.replicas"] = 1
        kafka["listeners"][0]["tls"] = False
        _first(docs, "KafkaNodePool", "brokers")["spec"]["replicas"] = 1

    problems = kafka_cluster_problems(_mutated("prod", weaken))
    assert len(problems) == 3, problems


def test_network_policy_checker_rejects_open_and_missing_rules() -> None:
    def open_port(docs: list[Doc]) -> None:
        _first(docs, "NetworkPolicy", "intake")["spec"]["egress"][0].pop("ports")

    def to_anywhere(docs: list[Doc]) -> None:
        _first(docs, "NetworkPolicy", "scheduling")["spec"]["egress"].append(
            {
                "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                "ports": [{"protocol": "TCP", "port": 443}],
            }
        )

    def other_database(docs: list[Doc]) -> None:
        rules = _first(docs, "NetworkPolicy", "outcomes")["spec"]["egress"]
        rules[1]["to"][0]["podSelector"]["matchLabels"]["cnpg.io/cluster"] = "intake-db"

    def no_deny(docs: list[Doc]) -> None:
        docs.remove(_first(docs, "NetworkPolicy", "fhir-api-default-deny"))

    for change, message in (
        (open_port, "egress rule 0 opens every port"),
        (to_anywhere, "scheduling: egress allows (('ip', '0.0.0.0/0')"),
        (
            other_database,
            "outcomes: egress lacks (('pods', '<this namespace>', 'cnpg.io/cluster=outcomes-db')",
        ),
        (no_deny, "no default-deny"),
    ):
        problems = network_policy_problems(
            _mutated("prod", change), {"192.0.2.10/32"}, {"198.51.100.0/24"}
        )
        assert any(message in p for p in problems), (message, problems)


def test_workload_checkers_reject_weak_pods_and_missing_pieces() -> None:
    def weaken(docs: list[Doc]) -> None:
        spec = pod_spec(_first(docs, "Deployment", "intake"))
        spec["securityContext"].pop("seccompProfile")
        container = spec["containers"][0]
        container["securityContext"].pop("seccompProfile")
        container["securityContext"]["capabilities"]["drop"] = ["NET_RAW"]
        container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "metrics"]

    docs = _mutated("prod", weaken)
    intake = _first(docs, "Deployment", "intake")
    problems = hardening_problems(intake) + metrics_dir_problems(docs, intake)
    assert any("seccompProfile is None" in p for p in problems)
    assert any("capabilities are not all dropped" in p for p in problems)
    assert any("is not an emptyDir mount" in p for p in problems)

    def scale_fixed(docs: list[Doc]) -> None:
        _first(docs, "Deployment", "intake")["spec"]["replicas"] = 2
        docs.remove(_first(docs, "HorizontalPodAutoscaler", "outcomes"))

    problems = autoscaler_problems(_mutated("prod", scale_fixed))
    assert any("intake: spec.replicas is set" in p for p in problems)
    assert any("outcomes: 0 HorizontalPodAutoscalers" in p for p in problems)

    def plain_http(docs: list[Doc]) -> None:
        _first(docs, "Ingress", "scheduling")["spec"].pop("tls")

    assert ingress_tls_problems(_mutated("prod", plain_http)) == [
        "scheduling: host fhir.example.org is not served over TLS"
    ]

    def unmonitored(docs: list[Doc]) -> None:
        _first(docs, "ServiceMonitor")["spec"]["endpoints"][0]["path"] = "/metrics/"
        rules = _first(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
        rules[:] = [r for r in rules if "kemdr_consumer_lag" not in r["expr"]]

    problems = monitoring_problems(_mutated("prod", unmonitored))
    assert "intake: no ServiceMonitor scrapes /metrics" in problems
    assert "no alert on kemdr_consumer_lag" in problems
