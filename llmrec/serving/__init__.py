"""Online serving: the request flow and the stages it calls, each a plain object (no Ray).

`pipeline` is the flow with its budgets and degradations; `recommender` composes the stages in one
process; `ranker` holds the catalog-side state (indexes, scene vectors, users, collaborative
models) and ranks; `deployments/` runs the same objects under Ray Serve.
"""
