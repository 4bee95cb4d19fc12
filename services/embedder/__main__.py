"""``python -m services.embedder``: run the embedding microservice."""

import sys

from services.embedder.main import main

sys.exit(main())
