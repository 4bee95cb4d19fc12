"""``python -m services.query``: run the gRPC query microservice."""

import sys

from services.query.main import main

sys.exit(main())
