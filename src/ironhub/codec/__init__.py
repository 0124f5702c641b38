"""Sans-IO codecs: MQTT 3.1.1 framing, the Azure IoT topic grammar and SAS tokens.

Nothing in this package touches sockets, clocks, files or asyncio; a test enforces it.
"""
