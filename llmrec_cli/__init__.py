"""The `llmrec` command line: the edge that joins the library (`llmrec`), the Serve app
(`deployments`) and the Ray jobs (`train`), so that none of them imports another's caller."""
