"""Test support: a throwaway PKI, a mosquitto broker with TLS client certificates, an MQTT subscriber, and
helpers to run the agent as a separate process. Real peers on loopback, no mocks."""
