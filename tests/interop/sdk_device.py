"""A device driven by the unmodified Azure IoT device SDK (azure-iot-device 2.14.0).

Run with the SDK's own interpreter (``.venv-sdk/bin/python``), never imported by pytest: the SDK
pins paho-mqtt<2. It reads one JSON scenario from argv[1] and prints one JSON line per event,
so the test in the main environment can follow it:

    {"event": "connected"} / {"event": "sent", "n": 3} / {"event": "error", "type": "CredentialError"}

Scenario keys: ``auth`` ("sas" | "x509"), ``connection_string`` or (``hostname``, ``device_id``,
``cert_file``, ``key_file``), ``ca_file``, ``messages`` (count), ``interval`` (seconds between
messages), ``sastoken_ttl``, ``wait_disconnect`` (seconds to wait for the hub to drop us),
``properties`` (custom properties), ``keep_alive``.
"""

import json
import sys
import threading
import time
import uuid

from azure.iot.device import X509, IoTHubDeviceClient, Message  # type: ignore[import-not-found]

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


if __name__ == "__main__":
    sys.exit(main())
