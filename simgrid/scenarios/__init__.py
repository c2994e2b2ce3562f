"""Monte Carlo demand-shock scenarios: specs, seeded sampling, ScenarioSets and reduction."""
