"""The platform layer: settings of ZenML stacks, the local ZenML server, the cloud simulation,
background services, deployment through the Model Control Plane and BentoML, containers, run
configs. The only churnops package that talks to ZenML's client (besides steps, pipelines and
materializers, which are its adapters)."""
