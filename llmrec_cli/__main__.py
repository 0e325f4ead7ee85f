"""`python -m llmrec_cli ...`: the `llmrec` command without its installed script."""

import sys

from llmrec_cli.main import main

sys.exit(main())
