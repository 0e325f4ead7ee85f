"""Ray Serve deployments: thin wrappers that hold one llmrec object each, composed by `app.build_app`."""
