"""deploy/kubernetes/components/keda: the ScaledObjects that autoscale the two Kafka services on
their consumer lag, and the TriggerAuthentication their Kafka scaler connects with. There is no
cluster and no KEDA here: the objects are validated offline against the parts of KEDA's CRD
schemas they use, their scaler metadata against the Kafka scaler's documented fields, and every
value against what the services really use (topics, groups, brokers, security, partitions)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import ptsp_gate.runtime.service
from ptsp_gate.config import Settings
from ptsp_gate.policy import load_policy_book
from ptsp_gate.runtime.registry import entry_for
from tests.unit.deploy_files import (
    CONSOLE,
    KAFKA_SERVICES,
    KEDA_COMPONENT,
    by_kind,
    container,
    default_partitions,
    defaults,
    docs,
    pod_spec,
)

K8S_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
# The parts of KEDA's CRD schemas (keda.sh/v1alpha1, KEDA 2.18 and later) the objects here use,
# with their types, bounds and enums as the CRDs have them; anything else is refused, so a typo
# in a field name fails here rather than being dropped by the API server.
METADATA_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": K8S_NAME,
        "namespace": K8S_NAME,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
SCALING_RULES = {
    "type": "object",
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "value", "periodSeconds"],
                "properties": {
                    "type": {"enum": ["Pods", "Percent"]},
                    "value": {"type": "integer", "minimum": 1},
                    "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}
SCALED_OBJECT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": METADATA_SCHEMA,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string", "minLength": 1},
                        "envSourceContainerName": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "properties": {
                        "failureThreshold": {"type": "integer", "minimum": 0},
                        "replicas": {"type": "integer", "minimum": 0},
                        "behavior": {
                            "enum": [
                                "static",
                                "currentReplicas",
                                "currentReplicasIfHigher",
                                "currentReplicasIfLower",
                            ]
                        },
                    },
                    "additionalProperties": False,
                },
                "advanced": {
                    "type": "object",
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {
                                    "type": "object",
                                    "properties": {
                                        "scaleUp": SCALING_RULES,
                                        "scaleDown": SCALING_RULES,
                                    },
                                    "additionalProperties": False,
                                },
                            },
                            "additionalProperties": False,
                        },
                    },
                    "additionalProperties": False,
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string", "minLength": 1},
                            "name": {"type": "string"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                                "additionalProperties": False,
                            },
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
REFERENCE = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["parameter", "name", "key"],
        "properties": {
            "parameter": {"type": "string"},
            "name": {"type": "string"},
            "key": {"type": "string"},
        },
        "additionalProperties": False,
    },
}
TRIGGER_AUTHENTICATION_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": METADATA_SCHEMA,
        "spec": {
            "type": "object",
            "properties": {"secretTargetRef": REFERENCE, "configMapTargetRef": REFERENCE},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
SCHEMAS = {
    "ScaledObject": SCALED_OBJECT_SCHEMA,
    "TriggerAuthentication": TRIGGER_AUTHENTICATION_SCHEMA,
}

# The `kafka` scaler's trigger metadata, as KEDA documents it
# (keda.sh/docs/2.21/scalers/apache-kafka/, "Parameter list").
KAFKA_SCALER_METADATA = {
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "version",
    "fullMetadata",
    "partitionLimitation",
    "sasl",
    "saslTokenProvider",
    "tls",
    "unsafeSsl",
    "awsRegion",
}
KAFKA_SCALER_ENUMS = {
    "offsetResetPolicy": {"latest", "earliest"},
    "sasl": {"none", "plaintext", "scram_sha256", "scram_sha512", "oauthbearer", "gssapi"},
    "tls": {"enable", "disable"},
}
KAFKA_SCALER_BOOLEANS = {
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "fullMetadata",
    "unsafeSsl",
}
# Its authentication parameters, from a TriggerAuthentication.
KAFKA_SCALER_AUTH = {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"}
# The services' SASL mechanisms, as the scaler names them.
SASL_MODES = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
}


def _component_docs() -> list[dict[str, Any]]:
    return [d for path in sorted(KEDA_COMPONENT.glob("*.yaml")) for d in _resources(path)]


def _resources(path: Path) -> list[dict[str, Any]]:
    return [d for d in docs(path) if d.get("kind") in SCHEMAS]


def _scaled_objects() -> dict[str, dict[str, Any]]:
    found = by_kind("ScaledObject")
    assert found
    return found


def _trigger(scaled: dict[str, Any]) -> dict[str, Any]:
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    result: dict[str, Any] = trigger
    return result


def _configured() -> Settings:
    """The settings the Kafka services start with in the cluster: ptsp-gate-config's values over
    the defaults (the other settings are irrelevant here and left at theirs)."""
    data = by_kind("ConfigMap")["ptsp-gate-config"]["data"]
    fields = Settings.model_fields
    values: dict[str, Any] = {}
    for name, value in data.items():
        field = name.lower().removeprefix("ptsp_gate_")
        if field in fields and not field.endswith("_file"):
            values[field] = value
    return Settings(**values)


def _auth_references(authentication: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """parameter → (ConfigMap or Secret, name, key)."""
    found = {}
    for kind, key in (("ConfigMap", "configMapTargetRef"), ("Secret", "secretTargetRef")):
        for ref in authentication["spec"].get(key, []):
            assert ref["parameter"] not in found, ref
            found[ref["parameter"]] = (kind, ref["name"], ref["key"])
    return found


def _mounted_secret_key(workload: dict[str, Any], file_path: str) -> tuple[str, str]:
    """The Secret and key a file path in a workload's container comes from."""
    directory, _, key = file_path.rpartition("/")
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    (mount,) = [m for m in container(workload)["volumeMounts"] if m["mountPath"] == directory]
    return volumes[mount["name"]]["secret"]["secretName"], key


@pytest.mark.parametrize(
    "doc", _component_docs(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_keda_objects_match_the_crd_schemas(doc: dict[str, Any]) -> None:
    schema = SCHEMAS[doc["kind"]]
    jsonschema.validators.validator_for(schema).check_schema(schema)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(doc),
        key=lambda e: list(e.absolute_path),
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_the_schemas_refuse_what_keda_would() -> None:
    (scaled, *_) = _scaled_objects().values()
    misspelt = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 6}}
    assert list(jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA).iter_errors(misspelt))
    number = {
        **scaled,
        "spec": {
            **scaled["spec"],
            "triggers": [{"type": "kafka", "metadata": {"lagThreshold": 5}}],
        },
    }
    assert list(jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA).iter_errors(number))


def test_only_the_kafka_services_are_autoscaled_each_on_its_own_deployment() -> None:
    scaled_objects = _scaled_objects()
    assert set(scaled_objects) == set(KAFKA_SERVICES)
    assert CONSOLE not in scaled_objects
    deployments = by_kind("Deployment")
    for name, scaled in scaled_objects.items():
        target = scaled["spec"]["scaleTargetRef"]
        assert target["name"] == name
        assert target.get("kind", "Deployment") == "Deployment"
        assert target.get("apiVersion", "apps/v1") == deployments[name]["apiVersion"]
        labels = deployments[name]["metadata"]["labels"]
        assert labels.items() <= scaled["metadata"]["labels"].items(), name


def test_the_scaler_metadata_is_the_documented_one() -> None:
    for name, scaled in _scaled_objects().items():
        metadata = _trigger(scaled)["metadata"]
        assert not set(metadata) - KAFKA_SCALER_METADATA, (
            name,
            set(metadata) - KAFKA_SCALER_METADATA,
        )
        for key, allowed in KAFKA_SCALER_ENUMS.items():
            if key in metadata:
                assert metadata[key] in allowed, (name, key)
        for key in KAFKA_SCALER_BOOLEANS & set(metadata):
            assert metadata[key] in {"true", "false"}, (name, key)
        for key in ("lagThreshold", "activationLagThreshold"):
            if key in metadata:
                assert re.fullmatch(r"\d+", metadata[key]), (name, key)
        # Combinations KEDA's Kafka scaler refuses when it reads the trigger.
        flags = {k for k in KAFKA_SCALER_BOOLEANS if metadata.get(k) == "true"}
        assert not {"allowIdleConsumers", "limitToPartitionsWithLag"} <= flags, name
        assert not {"limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions"} <= flags
        if flags & {"limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions"}:
            assert metadata.get("topic"), name


def test_each_scaler_watches_the_group_topic_and_brokers_its_service_uses() -> None:
    settings = _configured()
    policies = load_policy_book(None)
    for name, scaled in _scaled_objects().items():
        spec = entry_for(name).spec(settings, policies)
        metadata = _trigger(scaled)["metadata"]
        assert metadata["consumerGroup"] == spec.group, name
        assert metadata["topic"] == spec.topic, name
        servers = [s.strip() for s in metadata["bootstrapServers"].split(",")]
        assert servers == settings.kafka_bootstrap_servers, name
    # What the services get with nothing configured is what the cluster configures.
    assert {_trigger(s)["metadata"]["consumerGroup"] for s in _scaled_objects().values()} == {
        defaults().group_permit_checker,
        defaults().group_enrolment_sync,
    }


def test_each_scaler_connects_as_the_services_do() -> None:
    settings = _configured()
    authentications = by_kind("TriggerAuthentication")
    config_maps = by_kind("ConfigMap")
    secrets = {
        d["metadata"]["name"]: d for d in docs(KEDA_COMPONENT.parents[1] / "secret.example.yaml")
    }
    for name, scaled in _scaled_objects().items():
        trigger = _trigger(scaled)
        metadata = trigger["metadata"]
        protocol = settings.kafka_security_protocol
        assert metadata.get("tls", "disable") == ("enable" if "SSL" in protocol else "disable")
        sasl = SASL_MODES[settings.kafka_sasl_mechanism] if "SASL" in protocol else "none"
        assert metadata.get("sasl", "none") == sasl, name
        references = _auth_references(authentications[trigger["authenticationRef"]["name"]])
        assert set(references) <= KAFKA_SCALER_AUTH
        for kind, source, key in references.values():
            if kind == "ConfigMap":
                assert key in config_maps[source]["data"], (source, key)
            else:
                assert key in secrets[source]["stringData"], (source, key)
        deployment = by_kind("Deployment")[name]
        data = config_maps["ptsp-gate-config"]["data"]
        if sasl != "none":
            # The same user, and the password from the file the service reads it from.
            assert references["username"] == (
                "ConfigMap",
                "ptsp-gate-config",
                "PTSP_GATE_KAFKA_SASL_USERNAME",
            )
            secret, key = _mounted_secret_key(
                deployment, data["PTSP_GATE_KAFKA_SASL_PASSWORD_FILE"]
            )
            assert references["password"] == ("Secret", secret, key)
        # The brokers' private CA, when the services have one.
        if "PTSP_GATE_KAFKA_SSL_CAFILE" in data:
            secret, key = _mounted_secret_key(deployment, data["PTSP_GATE_KAFKA_SSL_CAFILE"])
            assert references["ca"] == ("Secret", secret, key)
        else:
            assert "ca" not in references


def test_replicas_stay_between_two_and_the_partition_count() -> None:
    partitions = default_partitions()
    deployments = by_kind("Deployment")
    settings = _configured()
    for name, scaled in _scaled_objects().items():
        spec = scaled["spec"]
        metadata = _trigger(scaled)["metadata"]
        # Never idle consumers: the ceiling is the input topic's partitions, and KEDA's own cap
        # at the partition count stays on.
        assert spec["maxReplicaCount"] == partitions, name
        assert metadata.get("allowIdleConsumers", "false") == "false", name
        # Never 0: one instance runs the outbox relay (and permit-checker the sweep and override
        # settling) with no input at all; and the base's count stays the floor.
        assert spec["minReplicaCount"] == deployments[name]["spec"]["replicas"] >= 2, name
        assert "idleReplicaCount" not in spec, name
        # A group that committed nothing starts where the services' consumer starts.
        consumer = inspect.getsource(ptsp_gate.runtime.service)
        (reset,) = set(re.findall(r'auto_offset_reset="(\w+)"', consumer))
        assert metadata["offsetResetPolicy"] == reset, name
        # Less than a batch waiting per replica is keeping up: another one would only rebalance.
        assert int(metadata["lagThreshold"]) >= settings.batch_max_records, name
        # Each change of the replica count is a rebalance: no scaling on a passing burst.
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] >= 30, name
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300, name
