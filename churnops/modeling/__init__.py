"""Domain, modeling: candidate search and the fitted sklearn Pipeline (``training``), metrics
(``evaluation``), the champion/challenger decision (``promotion``) and the gate's rules every path
obeys (``governance``). No ZenML, no platform."""
