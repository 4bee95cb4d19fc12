"""Design grants: the domain model (``model``), USPTO XML of every DTD version
(``xml_parser``), and weekly bundles and archives (``reader``)."""
