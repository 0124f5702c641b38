"""A device driven by the unmodified Azure IoT device SDK (azure-iot-device 2.14.0).

Run with the SDK's own interpreter (``.venv-sdk/bin/python``), never imported by pytest: the SDK
pins paho-mqtt<2. It reads one JSON scenario from argv[1] and prints one JSON line per event,
so the test in the main environment can follow it:

    {"event": "connected"} / {"event": "sent", "n": 3} / {"event": "error", "type": "CredentialError"}

Scenario keys: ``auth`` ("sas" | "x509"), ``connection_string`` or (``hostname``, ``device_id``,
``cert_file``, ``key_file``), ``ca_file``, ``messages`` (count), ``interval`` (seconds between
messages), ``sastoken_ttl``, ``wait_disconnect`` (seconds to wait for the hub to drop us),
``properties`` (custom properties), ``keep_alive``.

``"mode": "cloud"`` runs a long-lived device (or module, ``"module": true``) for the cloud
features instead (see :func:`run_cloud`): it sets the handlers named in ``handlers``
("methods", "messages", "desired"), prints ``{"event": "ready"}`` and then executes one JSON
command per stdin line until ``{"op": "stop"}`` or end of input.
"""

import json
import logging
import os
import sys
import threading
import time
import uuid

from azure.iot.device import (  # type: ignore[import-not-found]
    X509,
    IoTHubDeviceClient,
    IoTHubModuleClient,
    Message,
    MethodResponse,
)

_emit_lock = threading.Lock()


def emit(**fields: object) -> None:
    # SDK callbacks run on their own threads: one whole line per event, never interleaved.
    with _emit_lock:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def main() -> int:
    scenario = json.loads(sys.argv[1])
    with open(scenario["ca_file"]) as f:
        ca = f.read()
    kwargs = {"server_verification_cert": ca, "connection_retry": False}
    if "sastoken_ttl" in scenario:
        kwargs["sastoken_ttl"] = scenario["sastoken_ttl"]
    if "keep_alive" in scenario:
        kwargs["keep_alive"] = scenario["keep_alive"]
    if scenario.get("mode") == "cloud":
        return run_cloud(scenario, kwargs)
    if scenario["auth"] == "sas":
        client = IoTHubDeviceClient.create_from_connection_string(
            scenario["connection_string"], **kwargs
        )
    else:
        client = IoTHubDeviceClient.create_from_x509_certificate(
            x509=X509(scenario["cert_file"], scenario["key_file"]),
            hostname=scenario["hostname"],
            device_id=scenario["device_id"],
            **kwargs,
        )
    dropped = threading.Event()

    def on_state_change() -> None:
        if not client.connected:
            dropped.set()
            emit(event="disconnected")

    client.on_connection_state_change = on_state_change
    try:
        client.connect()
        emit(event="connected")
        for i in range(scenario.get("messages", 0)):
            msg = Message(json.dumps({"n": i}))
            msg.message_id = str(uuid.uuid4())
            msg.correlation_id = f"corr-{i}"
            msg.content_type = "application/json"
            msg.content_encoding = "utf-8"
            for key, value in scenario.get("properties", {}).items():
                msg.custom_properties[key] = value
            client.send_message(msg)
            emit(event="sent", n=i, message_id=msg.message_id)
            time.sleep(scenario.get("interval", 0))
        # Security reports, marked the SDK's own way ($.ifid, the Defender-for-IoT marker).
        for i, body in enumerate(scenario.get("security_messages", [])):
            msg = Message(
                json.dumps(body), content_encoding="utf-8", content_type="application/json"
            )
            msg.set_as_security_message()
            client.send_message(msg)
            emit(event="sent-security", n=i)
        if scenario.get("wait_disconnect"):
            emit(event="waiting")
            got = dropped.wait(scenario["wait_disconnect"])
            emit(event="dropped" if got else "not-dropped")
    except Exception as exc:
        emit(event="error", type=type(exc).__name__, cause=type(exc.__cause__).__name__)
        return 1
    finally:
        try:
            client.shutdown()
        except Exception:
            pass
    emit(event="done")
    return 0


class _EmitHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        emit(event="sdk_log", message=record.getMessage())


def run_cloud(scenario: dict, kwargs: dict) -> int:
    """The cloud features, driven by the test through stdin (one JSON command per line).

    Scenario keys (besides ``connection_string`` and ``ca_file``): ``module`` (use
    ``IoTHubModuleClient``), ``handlers`` (any of "methods", "messages", "desired"),
    ``method_status`` (the status every method call is answered with; the payload echoes the
    request), ``connection_retry`` and ``connection_retry_interval`` (let the SDK reconnect by
    itself after a drop), ``run_seconds`` (a safety net: the process ends after that long),
    ``trace_twin_sync`` (report the SDK's own log lines about its desired-properties
    resynchronisation, the twin GET it sends after each reconnect, as ``sdk_log`` events).

    Events: ``state`` (``connected``: the SDK's connection-state handler), ``ready``,
    ``method`` / ``message`` / ``desired`` (what a handler received), ``twin``, ``patched``,
    ``sent_output`` (command results), ``error`` and ``done``.

    Commands: ``{"op": "get_twin"}``, ``{"op": "patch_reported", "patch": {...}}``,
    ``{"op": "send_output", "output": "alerts", "data": "...", "properties": {...}}``,
    ``{"op": "stop"}``.
    """
    kwargs["connection_retry"] = bool(scenario.get("connection_retry", False))
    if "connection_retry_interval" in scenario:
        kwargs["connection_retry_interval"] = scenario["connection_retry_interval"]
    client_class = IoTHubModuleClient if scenario.get("module") else IoTHubDeviceClient
    client = client_class.create_from_connection_string(scenario["connection_string"], **kwargs)
    status = int(scenario.get("method_status", 200))

    # A safety net if the test dies without closing our stdin.
    watchdog = threading.Timer(float(scenario.get("run_seconds", 300)), os._exit, (3,))
    watchdog.daemon = True
    watchdog.start()

    def on_state_change() -> None:
        emit(event="state", connected=client.connected)

    def on_method(request: object) -> None:
        emit(
            event="method",
            name=request.name,
            payload=request.payload,
            request_id=request.request_id,
        )
        answer = {"method": request.name, "echo": request.payload}
        client.send_method_response(
            MethodResponse.create_from_method_request(request, status, answer)
        )

    def on_message(message: object) -> None:
        data = message.data
        emit(
            event="message",
            data=data.decode(errors="replace") if isinstance(data, bytes) else data,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            content_type=message.content_type,
            expiry_time_utc=message.expiry_time_utc,
            input_name=message.input_name,
            custom_properties=dict(message.custom_properties),
        )

    def on_desired(patch: dict) -> None:
        emit(event="desired", patch=patch)

    if scenario.get("trace_twin_sync"):
        sync_logger = logging.getLogger("azure.iot.device.iothub.pipeline.pipeline_stages_iothub")
        sync_logger.setLevel(logging.DEBUG)
        sync_logger.addHandler(_EmitHandler())

    client.on_connection_state_change = on_state_change
    setters = {
        "methods": ("on_method_request_received", on_method),
        "messages": ("on_message_received", on_message),
        "desired": ("on_twin_desired_properties_patch_received", on_desired),
    }
    try:
        client.connect()
        for name in scenario.get("handlers", []):
            attribute, handler = setters[name]
            # Blocks until the SDK's SUBSCRIBE is acknowledged.
            setattr(client, attribute, handler)
        emit(event="ready")
        while True:
            line = sys.stdin.readline()
            if not line:
                break
            command = json.loads(line)
            op = command["op"]
            if op == "stop":
                break
            if op == "get_twin":
                emit(event="twin", twin=client.get_twin())
            elif op == "patch_reported":
                client.patch_twin_reported_properties(command["patch"])
                emit(event="patched")
            elif op == "send_output":
                msg = Message(command["data"])
                msg.message_id = str(uuid.uuid4())
                for key, value in command.get("properties", {}).items():
                    msg.custom_properties[key] = value
                client.send_message_to_output(msg, command["output"])
                emit(event="sent_output", message_id=msg.message_id)
            else:
                emit(event="error", type="UnknownCommand", cause=op)
                return 1
    except Exception as exc:
        emit(event="error", type=type(exc).__name__, cause=type(exc.__cause__).__name__)
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
