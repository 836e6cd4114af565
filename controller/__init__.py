"""The power-cap node agent: pure policy, actuators (RAPL, NVML), Kubernetes I/O, the loop."""
