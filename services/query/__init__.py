"""The gRPC query microservice: cross-modal search for examiner tooling.

Run it with ``python -m services.query`` or ``patentclip serve query``.
"""
