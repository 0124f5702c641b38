"""The identity registry: devices, their credentials and states, and registered CAs."""
