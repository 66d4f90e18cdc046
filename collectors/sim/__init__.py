"""The simulated plant: enterprises' devices served over real protocols, physics, scenarios."""

from collectors.sim.demo import DEMO_LAYOUT, demo_config_toml, hazard_grade
from collectors.sim.plant import SCENARIOS, Plant, PlantLayout, Scenario
from collectors.sim.runner import Simulator

__all__ = [
    "DEMO_LAYOUT",
    "SCENARIOS",
    "Plant",
    "PlantLayout",
    "Scenario",
    "Simulator",
    "demo_config_toml",
    "hazard_grade",
]
