"""A device provisioned by the unmodified Azure IoT device SDK (azure-iot-device 2.14.0).

Run with the SDK's own interpreter (``.venv-sdk/bin/python``), never imported by pytest: the SDK
pins paho-mqtt<2. It reads one JSON scenario from argv[1], registers with the provisioning
service through ``ProvisioningDeviceClient`` (azure-iot-mqtt.md §5), then connects to the
assigned hub with the same credentials as ``IoTHubDeviceClient`` and sends telemetry. One JSON
line per event:

    {"event": "registered", "status": "assigned", "device_id": ..., "assigned_hub": ...,
     "substatus": ..., "etag": ..., "payload": <the SDK's response_payload string>}
    {"event": "connected"} / {"event": "sent", "n": 0} / {"event": "done"}
    {"event": "error", "stage": "register" | "hub", "type": ..., "message": ..., "cause": ...}

Scenario keys: ``provisioning_host``, ``id_scope``, ``registration_id``, ``ca_file``, ``auth``
("symmetric" | "x509"), ``symmetric_key`` or (``cert_file``, ``key_file``),
``provisioning_payload`` (optional, any JSON value), ``messages`` (telemetry count after
registration; ``connect_hub`` false skips the hub part), ``run_seconds`` (a safety net: the
process ends after that long).
"""

import json
import os
import sys
import threading

from azure.iot.device import (  # type: ignore[import-not-found]
    X509,
    IoTHubDeviceClient,
    Message,
    ProvisioningDeviceClient,
)


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def emit_error(stage: str, exc: BaseException) -> None:
    cause = exc.__cause__
    emit(
        event="error",
        stage=stage,
        type=type(exc).__name__,
        message=str(exc),
        cause=type(cause).__name__ if cause is not None else None,
        cause_message=str(cause) if cause is not None else None,
    )


def main() -> int:
    scenario = json.loads(sys.argv[1])
    watchdog = threading.Timer(float(scenario.get("run_seconds", 100)), os._exit, (3,))
    watchdog.daemon = True
    watchdog.start()
    with open(scenario["ca_file"]) as f:
        ca = f.read()
    symmetric = scenario["auth"] == "symmetric"
    x509 = None if symmetric else X509(scenario["cert_file"], scenario["key_file"])

    # --- provisioning ---------------------------------------------------------------------------
    if symmetric:
        provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=scenario["provisioning_host"],
            registration_id=scenario["registration_id"],
            id_scope=scenario["id_scope"],
            symmetric_key=scenario["symmetric_key"],
            server_verification_cert=ca,
        )
    else:
        provisioning = ProvisioningDeviceClient.create_from_x509_certificate(
            provisioning_host=scenario["provisioning_host"],
            registration_id=scenario["registration_id"],
            id_scope=scenario["id_scope"],
            x509=x509,
            server_verification_cert=ca,
        )
    if "provisioning_payload" in scenario:
        provisioning.provisioning_payload = scenario["provisioning_payload"]
    try:
        result = provisioning.register()
    except Exception as exc:
        emit_error("register", exc)
        return 1
    state = result.registration_state
    emit(
        event="registered",
        status=result.status,
        operation_id=result.operation_id,
        device_id=state.device_id if state else None,
        assigned_hub=state.assigned_hub if state else None,
        substatus=state.sub_status if state else None,
        etag=state.etag if state else None,
        created=state.created_date_time if state else None,
        payload=state.response_payload if state else None,
    )
    if result.status != "assigned" or state is None:
        emit(event="error", stage="register", type="NotAssigned", message=result.status)
        return 1
    if not scenario.get("connect_hub", True):
        emit(event="done")
        return 0

    # --- the assigned hub, with the same credentials --------------------------------------------
    kwargs = {"server_verification_cert": ca, "connection_retry": False}
    if symmetric:
        client = IoTHubDeviceClient.create_from_symmetric_key(
            symmetric_key=scenario["symmetric_key"],
            hostname=state.assigned_hub,
            device_id=state.device_id,
            **kwargs,
        )
    else:
        client = IoTHubDeviceClient.create_from_x509_certificate(
            x509=x509, hostname=state.assigned_hub, device_id=state.device_id, **kwargs
        )
    try:
        client.connect()
        emit(event="connected")
        for i in range(scenario.get("messages", 0)):
            msg = Message(json.dumps({"n": i, "registration_id": scenario["registration_id"]}))
            msg.content_type = "application/json"
            msg.content_encoding = "utf-8"
            client.send_message(msg)
            emit(event="sent", n=i)
        client.disconnect()
    except Exception as exc:
        emit_error("hub", exc)
        return 1
    finally:
        try:
            client.shutdown()
        except Exception:
            pass
    emit(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
