"""The simulated plant: enterprises' devices served over real protocols, with physics and scenarios."""
