"""Chapter 05, recommendation and ranking: the interaction simulator that knows the truth, two towers,
the ranking funnel, re-ranking, multi-task learning, off-policy evaluation (from scratch)."""
