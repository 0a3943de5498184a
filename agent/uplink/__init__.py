"""Store -> IoT Core: envelopes, the MQTT5 link, and the publish/acknowledge loop."""
