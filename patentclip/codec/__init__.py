"""Wire formats of the core: grant events on the topic (``events``) and the search API's
enum maps (``api``). Protobuf only, no transport."""
