"""Simulated hardware and real-component helpers for the demo, the tests and the benchmarks."""

from powerplane.components import Component

COMPONENT = Component(
    name="demo",
    order=99,
    commands=(("demo", "powerplane.lab.demo:command"),),
)
