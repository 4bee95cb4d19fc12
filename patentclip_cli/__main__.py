"""``python -m patentclip_cli``: the same as the ``patentclip`` command."""

import sys

from patentclip_cli.main import main

sys.exit(main())
