"""Chapter 07, serving performance: queues and simulation, batching, caching, protocols, low latency,
budgets and breakers, autoscaling, many models (from scratch, checked against the references)."""
