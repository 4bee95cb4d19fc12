"""``python -m patentclip`` runs the CLI."""

import sys

from patentclip.cli import main

sys.exit(main())
